"""The conversation a turn shows the model: the system prompt and the last messages.

As the upstream master reads it (PROTOCOL.md §3.3, API.md §13.9): the last
``max_last_messages`` messages of the conversation, oldest first, the last being the
current user message (stored before the master is invoked), with the payload's files
appended to it as ``FILES:`` and their JSON. A master turn is stored as the JSON text of
its whole answer; the model is shown only its ``response`` text. ``max_last_messages``
of 0 shows the current message alone.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from persistence import SenderType

if TYPE_CHECKING:
    from persistence import ChatTurnStore

__all__ = ["DEFAULT_LAST_MESSAGES", "model_messages", "read_history"]

DEFAULT_LAST_MESSAGES = 5


def last_messages(configs: Mapping[str, Any]) -> int:
    """Return how many messages the turn reads (``max_last_messages``, default 5)."""
    value = configs.get("max_last_messages", DEFAULT_LAST_MESSAGES)
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return DEFAULT_LAST_MESSAGES


async def read_history(
    store: ChatTurnStore, session_id: uuid.UUID, user_id: uuid.UUID, count: int
) -> list[tuple[SenderType, str]]:
    """Return the conversation's last ``count`` messages, oldest first (0: the current one).

    Raises:
        asyncpg.PostgresError, OSError: The database cannot be read.
    """
    async with store.connect() as db:
        newest = await db.last_messages(session_id, owner_id=user_id, limit=count)
    return list(reversed(newest))


def model_messages(
    history: Sequence[tuple[SenderType, str]],
    *,
    system_prompt: str,
    files: Sequence[Any],
) -> list[dict[str, Any]]:
    """Build the chat-completion messages: the system prompt, then the history."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt}]
    for sender, content in history:
        if sender == SenderType.USER:
            messages.append({"role": "user", "content": content})
        else:
            messages.append({"role": "assistant", "content": _answer_text(content)})
    if files and messages[-1]["role"] == "user":
        listed = json.dumps(list(files), ensure_ascii=False, default=str)
        messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\nFILES:\n{listed}"}
    return messages


def _answer_text(content: str) -> str:
    """Return the text of a stored master turn (the JSON of the whole answer, or text)."""
    try:
        stored = json.loads(content)
    except ValueError:
        return content
    if isinstance(stored, dict) and "response" in stored:
        response = stored["response"]
        return response if isinstance(response, str) else json.dumps(response, default=str)
    return content
