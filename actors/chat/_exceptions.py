"""Errors raised by the chat clients.

Class tree::

    ChatError
    ├── ChatBusyError
    └── ChatUnavailableError
"""

from __future__ import annotations

__all__ = ["ChatBusyError", "ChatError", "ChatUnavailableError"]


class ChatError(Exception):
    """Base class of every error the chat clients raise."""


class ChatBusyError(ChatError):
    """Raised when a session already has as many messages queued as it accepts."""


class ChatUnavailableError(ChatError):
    """Raised when no chat actor can be started or reached for a session."""
