"""The clock the runtime reads time from and sleeps on, injectable for tests."""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    """Time source of an actor system: restart windows, backoff and timestamps."""

    def now(self) -> float:
        """Return a monotonic time in seconds."""
        ...

    def wall(self) -> float:
        """Return the wall-clock time in seconds since the epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on this clock."""
        ...


class SystemClock:
    """The real clock: the event loop's monotonic time and `time.time()`."""

    def now(self) -> float:
        return anyio.current_time()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
