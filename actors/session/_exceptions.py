"""Exceptions of the router session.

Class tree::

    RouterSessionError
    ├── RouterConnectionError
    └── MasterAgentError
        ├── MasterNotActiveError
        ├── MasterFailedError
        ├── MasterTimeoutError
        └── RouterUnavailableError

The ``str()`` of every `MasterAgentError` is the text to show the user.
"""

from __future__ import annotations

__all__ = [
    "ROUTER_UNAVAILABLE",
    "MasterAgentError",
    "MasterFailedError",
    "MasterNotActiveError",
    "MasterTimeoutError",
    "RouterConnectionError",
    "RouterSessionError",
    "RouterUnavailableError",
    "format_seconds",
]

ROUTER_UNAVAILABLE = "Cannot connect to router service. Try again later"
MASTER_NOT_ACTIVE = "Agent is NOT active"


class RouterSessionError(Exception):
    """Base class of every error the router session raises."""


class RouterConnectionError(RouterSessionError):
    """Raised when a WebSocket to the router cannot be opened, fails or closes."""


class MasterAgentError(RouterSessionError):
    """Raised when an invocation of the master agent gives no reply; ``str()`` is for users."""


class MasterNotActiveError(MasterAgentError):
    """Raised when the router says the master agent is not connected."""

    def __init__(self, message: str = MASTER_NOT_ACTIVE) -> None:
        super().__init__(message)


class MasterFailedError(MasterAgentError):
    """Raised when the master agent (or the router on its behalf) answers with an error."""


class MasterTimeoutError(MasterAgentError):
    """Raised when the master agent does not answer before the deadline."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"Master agent did not answer within {format_seconds(timeout)} s")
        self.timeout = timeout


class RouterUnavailableError(MasterAgentError):
    """Raised when the session is not connected, or its connection drops during a call."""

    def __init__(self, message: str = ROUTER_UNAVAILABLE) -> None:
        super().__init__(message)


def format_seconds(seconds: float) -> str:
    """Format ``seconds`` without a trailing ``.0`` for whole numbers (``300``, ``0.5``)."""
    value = float(seconds)
    return str(int(value)) if value.is_integer() else repr(value)
