"""Login throttling: failed attempts per username and per client address.

Each key keeps the times of its failures within a sliding window. Once a key has its
limit of failures in the window, further attempts are refused until the oldest one
leaves it, without checking the password: a brute force gets a few guesses per
window, a forgotten password costs its owner a short wait. The table is bounded: past
``max_keys`` keys the least recently failed ones are forgotten, so a flood of
made-up usernames costs memory in proportion to the bound, not to the flood.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginThrottle", "ThrottleLimits"]


@dataclass(frozen=True, slots=True)
class ThrottleLimits:
    """How many failures each kind of key may have within ``window`` seconds."""

    per_user: int
    per_address: int
    window: float


class _Failures:
    """Failure times per key, least recently failed first."""

    def __init__(self, max_keys: int) -> None:
        self._times: OrderedDict[str, deque[float]] = OrderedDict()
        self._max_keys = max_keys

    def retry_after(self, key: str, limit: int, window: float, now: float) -> float:
        """Return the seconds until ``key`` may try again (0 when it may now)."""
        times = self._times.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - window:
            times.popleft()
        if not times:
            del self._times[key]
            return 0.0
        if len(times) < limit:
            return 0.0
        return times[-limit] + window - now

    def add(self, key: str, limit: int, now: float) -> None:
        times = self._times.pop(key, None) or deque(maxlen=limit)
        times.append(now)
        self._times[key] = times
        while len(self._times) > self._max_keys:
            self._times.popitem(last=False)

    def clear(self, key: str) -> None:
        self._times.pop(key, None)

    def __len__(self) -> int:
        return len(self._times)


class LoginThrottle:
    """Count failed logins per username and per address; tell when to refuse.

    Sync and never blocking (one step of the event loop per call).

    Args:
        limits: the failures allowed per key within the window.
        max_keys: the most usernames (and, apart, addresses) remembered.
        clock: monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        limits: ThrottleLimits,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self._users = _Failures(max_keys)
        self._addresses = _Failures(max_keys)
        self._clock = clock

    def retry_after(self, username: str, address: str) -> int:
        """Return the whole seconds to wait before another attempt, or 0 to go ahead."""
        now, limits = self._clock(), self.limits
        wait = max(
            self._users.retry_after(_user_key(username), limits.per_user, limits.window, now),
            self._addresses.retry_after(address, limits.per_address, limits.window, now),
        )
        return math.ceil(wait) if wait > 0 else 0

    def failed(self, username: str, address: str) -> None:
        """Count one failed attempt against both the username and the address."""
        now = self._clock()
        self._users.add(_user_key(username), self.limits.per_user, now)
        self._addresses.add(address, self.limits.per_address, now)

    def succeeded(self, username: str) -> None:
        """Forget the username's failures (the address keeps its own)."""
        self._users.clear(_user_key(username))

    def statistics(self) -> tuple[int, int]:
        """Return how many usernames and addresses currently have failures on record."""
        return len(self._users), len(self._addresses)


def _user_key(username: str) -> str:
    # Bounded, so that a megabyte username costs the table no more than a short one.
    return username[:255]
