"""Pure helpers of a chat turn: titles, the master payload, replies and frames. No I/O."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persistence import File, ModelChoice

__all__ = [
    "CANCELLED",
    "CHAT_NOT_FOUND",
    "CONFIG_NOT_FOUND",
    "DATABASE_UNAVAILABLE",
    "DECRYPT_FAILED",
    "INTERRUPTED",
    "NEW_CHAT_TITLE",
    "PROVIDER_NOT_FOUND",
    "TITLE_LENGTH",
    "UNEXPECTED",
    "ChatInput",
    "Reply",
    "agent_response_body",
    "agent_response_frame",
    "compact_json",
    "configs_for",
    "error_reply",
    "file_dto",
    "is_ollama",
    "master_payload",
    "reply_from_master",
    "stored_content",
    "stored_error",
    "title_for",
]

compact_json = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":")).encode
"""Frames' JSON text (one encoder for all: ``json.dumps`` with options builds one a call)."""

TITLE_LENGTH = 20
NEW_CHAT_TITLE = "New Chat"
PROVIDER_NOT_FOUND = "Provider {} does not exist"
CONFIG_NOT_FOUND = "Config {} does not exist"
CHAT_NOT_FOUND = "Chat session {} was not found"
# The trailing space is part of the contract (ENDPOINTS.md §9).
DECRYPT_FAILED = (
    "Could not decrypt api_key. Make sure 'api_key' exists and model config was created beforehand "
)
UNEXPECTED = "Unexpected error occured. Try again later"
# The REST routes' text for the same condition (their 503 body).
DATABASE_UNAVAILABLE = "Database unavailable. Try again later"
CANCELLED = "Turn cancelled"
INTERRUPTED = "The server stopped before this message was answered. Send it again"


@dataclass(frozen=True, slots=True)
class ChatInput:
    """One validated front-end message.

    Attributes:
        message: The user's text (may be empty).
        llm_name: The name of one of the user's model configs.
        provider: The name of one of the user's providers; None in the older form,
            where the provider that owns the named config is used (Q2).
        files: Ids of the user's uploaded files to attach.
    """

    message: str
    llm_name: str
    provider: str | None = None
    files: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """What a turn answers: the inner ``response`` object and its execution time."""

    response: Any
    execution_time: float


def title_for(message: str) -> str:
    """Return a new conversation's title: the first 20 characters, or ``New Chat``."""
    return message[:TITLE_LENGTH] if message else NEW_CHAT_TITLE


def is_ollama(provider_name: str) -> bool:
    """Tell whether the provider keeps no API key (its key is sent as null)."""
    return provider_name.lower().strip() == "ollama"


def error_reply(text: str) -> Reply:
    """Return the error object a failed turn answers and stores (R 7, Q4)."""
    return Reply({"response": text, "agents_trace": [], "is_success": False}, 0.0)


def reply_from_master(response: Any, execution_time: Any) -> Reply | None:
    """Turn the master's answer into a reply; None if it is neither an object nor a string.

    A bare string becomes the object form, so that the stored history stays readable
    by the front-end (FE 10).
    """
    try:
        seconds = float(execution_time) if execution_time is not None else 0.0
    except (TypeError, ValueError):
        seconds = 0.0
    if isinstance(response, Mapping):
        return Reply(dict(response), seconds)
    if isinstance(response, str):
        return Reply({"response": response, "agents_trace": [], "is_success": True}, seconds)
    return None


def file_dto(file: File) -> dict[str, Any]:
    """Render the File DTO (ENDPOINTS.md §8)."""
    return {
        "id": str(file.id),
        "session_id": str(file.session_id) if file.session_id is not None else None,
        "request_id": str(file.request_id) if file.request_id is not None else None,
        "original_name": file.original_name,
        "mimetype": file.mimetype,
        "internal_id": str(file.internal_id),
        "internal_name": file.internal_name,
        "from_agent": file.from_agent,
        "creator_id": str(file.creator_id) if file.creator_id is not None else None,
    }


def configs_for(choice: ModelChoice, api_key: str | None) -> dict[str, Any]:
    """Build the flat ``configs`` of the master payload (API.md §13.7 step 4 and 6).

    The config's credentials, then the provider's metadata, then ``api_key`` (plain
    text, or None for ollama) are merged over the config's own fields.
    """
    return {
        "provider": choice.provider_name,
        "model": choice.model,
        "temperature": choice.temperature,
        "system_prompt": choice.system_prompt,
        "user_prompt": choice.user_prompt,
        "config_name": choice.name,
        "max_last_messages": choice.max_last_messages,
        **(choice.credentials or {}),
        **(choice.provider_metadata or {}),
        "api_key": api_key,
    }


def master_payload(
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    configs: Mapping[str, Any],
    files: Sequence[Mapping[str, Any]],
    timestamp: float,
) -> dict[str, Any]:
    """Build the master agent's ``request_payload`` (PROTOCOL.md §3.2, §5 step 2).

    ``files`` is always present; ``timestamp`` is whole POSIX seconds.
    """
    return {
        "session_id": str(session_id),
        "user_id": str(user_id),
        "configs": dict(configs),
        "files": [dict(f) for f in files],
        "timestamp": int(timestamp),
    }


def agent_response_frame(
    reply: Reply,
    *,
    request_id: uuid.UUID,
    session_id: uuid.UUID,
    files: Iterable[Mapping[str, Any]],
) -> str:
    """Render the ``agent_response`` frame (ENDPOINTS.md §9, FE 9) as JSON text."""
    body = agent_response_body(reply, request_id=request_id, session_id=session_id, files=files)
    return compact_json(body)


def agent_response_body(
    reply: Reply,
    *,
    request_id: uuid.UUID,
    session_id: uuid.UUID,
    files: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """Return the ``agent_response`` frame as an object (a final turn event holds it)."""
    return {
        "type": "agent_response",
        "response": {
            "execution_time": float(reply.execution_time),
            "response": reply.response,
            "request_id": str(request_id),
            "session_id": str(session_id),
            "files": list(files),
        },
    }


def stored_error(text: str) -> Callable[[uuid.UUID, uuid.UUID], tuple[str, dict[str, Any]]]:
    """Return what answers a turn with the error ``text`` outside its chat actor: for a
    request and conversation, the history's content and the ``agent_response`` frame
    (a `persistence.ReplyFor`, for turns finished in the database)."""
    reply = error_reply(text)
    content = stored_content(reply)

    def reply_for(request_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
        body = agent_response_body(reply, request_id=request_id, session_id=session_id, files=())
        return content, body

    return reply_for


def stored_content(reply: Reply) -> str:
    """Return the history ``content`` of a master turn: the JSON text of the response."""
    return json.dumps(reply.response, ensure_ascii=False, default=str)
