"""Exceptions of the router.

Class tree::

    RouterError
    └── InvalidFrameError
        └── FrameTooLargeError
"""

from __future__ import annotations

__all__ = ["FrameTooLargeError", "InvalidFrameError", "RouterError"]


class RouterError(Exception):
    """Base class of every error the router raises."""


class InvalidFrameError(RouterError):
    """Raised when a received frame is not a JSON object."""


class FrameTooLargeError(InvalidFrameError):
    """Raised when a received frame is larger than the router's frame limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"Frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit
