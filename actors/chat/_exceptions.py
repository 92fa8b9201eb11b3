"""Errors raised by the chat clients.

Class tree::

    ChatError
    ├── ChatBusyError
    ├── ChatStoppingError
    └── ChatUnavailableError
"""

from __future__ import annotations

__all__ = ["ChatBusyError", "ChatError", "ChatStoppingError", "ChatUnavailableError"]


class ChatError(Exception):
    """Base class of every error the chat clients raise."""


class ChatBusyError(ChatError):
    """Raised when a session already has as many messages queued as it accepts."""


class ChatStoppingError(ChatError):
    """Raised when a message is posted after the server's stop has begun."""


class ChatUnavailableError(ChatError):
    """Raised when no chat actor can be started or reached for a session."""
