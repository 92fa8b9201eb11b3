"""The ids of the chat turn the current task runs, for log lines to carry.

The chat actor sets them around each turn; a logging filter (``web._logging``) reads
them, so every line logged during a turn, by any module, names its session and request.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["current_request_id", "current_session_id", "turn_context"]

current_session_id: ContextVar[str | None] = ContextVar("current_session_id", default=None)
"""The ``session_id`` of the turn running in this task, or None."""

current_request_id: ContextVar[str | None] = ContextVar("current_request_id", default=None)
"""The ``request_id`` of the turn running in this task, or None."""


@contextlib.contextmanager
def turn_context(session_id: object, request_id: object) -> Iterator[None]:
    """Set both ids for the duration of the block, then restore the previous ones."""
    session_token = current_session_id.set(str(session_id))
    request_token = current_request_id.set(str(request_id))
    try:
        yield
    finally:
        current_request_id.reset(request_token)
        current_session_id.reset(session_token)
