"""Per-agent log budgets: token buckets over log frames and their bytes.

An agent's logs are stored by the back-end, so an agent that logs without pause fills
its disk. Each agent gets a budget of frames and of bytes that refills at a steady rate
up to a burst; a log past either budget is dropped by the router (and counted) instead
of being forwarded. The bursts are generous because 2.x agents send a whole request's
logs at once, just before its reply.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LogBudget", "LogLimits"]


@dataclasses.dataclass(frozen=True, slots=True)
class LogLimits:
    """The log budget of every agent.

    Attributes:
        rate: Log frames per second an agent may send, on average.
        burst: Log frames an agent may send at once.
        bytes_rate: Bytes of log frames per second an agent may send, on average.
        bytes_burst: Bytes of log frames an agent may send at once; a single frame
            larger than this is always dropped.
    """

    rate: float = 100.0
    burst: float = 1000.0
    bytes_rate: float = 256 * 1024
    bytes_burst: float = 4 * 1024 * 1024


class _Bucket:
    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.level = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now


class LogBudget:
    """The frame and byte buckets of one agent.

    Args:
        limits: Rates and bursts.
        clock: Monotonic seconds (injected, so tests need not wait).
    """

    __slots__ = ("_bytes", "_clock", "_frames")

    def __init__(self, limits: LogLimits, clock: Callable[[], float]) -> None:
        now = clock()
        self._clock = clock
        self._frames = _Bucket(limits.rate, limits.burst, now)
        self._bytes = _Bucket(limits.bytes_rate, limits.bytes_burst, now)

    def spend(self, size: int) -> bool:
        """Take one frame of ``size`` bytes from the budget; ``False`` if it is spent.

        A refused frame takes nothing, so an agent that slows down logs again as soon
        as its budget has refilled enough.
        """
        now = self._clock()
        frames, data = self._frames, self._bytes
        frames.refill(now)
        data.refill(now)
        if frames.level < 1 or data.level < size:
            return False
        frames.level -= 1
        data.level -= size
        return True
