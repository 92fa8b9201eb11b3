"""The agent events the router forwards to the back-end (PROTOCOL.md §1.4, §4).

The router sends ``{"request_payload": {"message_type": …, "agent_uuid": …, …}}`` on the
back-end's connection; `parse_forward` turns one such frame into an event, without I/O.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["AgentEvent", "AgentLogged", "AgentRegistered", "AgentUnregistered", "parse_forward"]


@dataclasses.dataclass(frozen=True, slots=True)
class AgentRegistered:
    """An agent connected and sent ``agent_register``.

    Attributes:
        agent_uuid: The agent's router client id (its JWT ``sub``).
        agent_jwt: The raw token it connected with (None if it had none).
        name: ``agent_name`` as sent (not normalised).
        description: ``agent_description``.
        input_schema: ``agent_input_schema`` (usually an OpenAI function schema).
    """

    agent_uuid: str
    agent_jwt: str | None
    name: str
    description: str
    input_schema: Any


@dataclasses.dataclass(frozen=True, slots=True)
class AgentUnregistered:
    """A client other than the back-end's own sockets disconnected."""

    agent_uuid: str


@dataclasses.dataclass(frozen=True, slots=True)
class AgentLogged:
    """An agent sent ``agent_log`` (1.0.9, or 2.x with ``invoked_by``).

    The fields are as received; the registry validates them.
    """

    agent_uuid: str
    session_id: Any
    request_id: Any
    log_level: Any
    message: Any
    invoked_by: str | None = None


AgentEvent = AgentRegistered | AgentUnregistered | AgentLogged


def parse_forward(frame: Mapping[str, Any]) -> AgentEvent | None:
    """Return the event in one frame from the router, or None if it carries none.

    Frames that carry an ``error`` or an unknown ``message_type`` give None.
    """
    payload = frame.get("request_payload")
    if not isinstance(payload, dict):
        return None
    kind = payload.get("message_type")
    agent_uuid = payload.get("agent_uuid")
    agent = "" if agent_uuid is None else str(agent_uuid)
    if kind == "agent_log":
        log_message = payload.get("log_message")
        if log_message is not None and not isinstance(log_message, str):
            # 1.0.9 passes non-string values through; store them as JSON text.
            log_message = json.dumps(log_message, default=str)
        invoked_by = payload.get("invoked_by")
        return AgentLogged(
            agent,
            payload.get("session_id"),
            payload.get("request_id"),
            payload.get("log_level"),
            log_message,
            invoked_by if isinstance(invoked_by, str) else None,
        )
    if kind == "agent_register":
        jwt = payload.get("agent_jwt")
        return AgentRegistered(
            agent,
            jwt if isinstance(jwt, str) else None,
            _text(payload.get("agent_name")),
            _text(payload.get("agent_description")),
            payload.get("agent_input_schema"),
        )
    if kind == "agent_unregister":
        return AgentUnregistered(agent)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)
