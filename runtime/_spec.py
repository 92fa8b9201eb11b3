"""Child specifications and the knobs of supervision."""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._mailbox import OverflowPolicy

__all__ = [
    "DEFAULT_START_TIMEOUT",
    "Backoff",
    "ChildSpec",
    "Directive",
    "Restart",
    "RestartIntensity",
    "Strategy",
]

DEFAULT_START_TIMEOUT = 30.0


class Restart(enum.Enum):
    """When a supervisor starts a child again after it exits."""

    PERMANENT = "permanent"
    """Always."""
    TRANSIENT = "transient"
    """Only after a crash, not after a normal exit."""
    TEMPORARY = "temporary"
    """Never; the child is removed once it exits."""


class Directive(enum.Enum):
    """What a supervisor does about one crash, as a child's `decider` chooses."""

    RESTART = "restart"
    """Restart by the child's restart type and the strategy (the default)."""
    STOP = "stop"
    """Leave the child stopped (state failed); its siblings carry on."""
    ESCALATE = "escalate"
    """Stop all children and fail to the parent with the same exception."""


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them crashes."""

    ONE_FOR_ONE = "one_for_one"
    """Only the crashed child."""
    ONE_FOR_ALL = "one_for_all"
    """All children: the others are stopped in reverse order, then all start in order."""
    REST_FOR_ONE = "rest_for_one"
    """The crashed child and those started after it."""


@dataclass(frozen=True, slots=True)
class RestartIntensity:
    """At most `max_restarts` restarts within `period` seconds, over all children.

    One more, and the supervisor stops its children and fails to its parent.
    The default, 3 in 5 s, is a little more lenient than OTP's 1 in 5 s: a
    server process would rather absorb a short burst of crashes in one child
    than restart the whole subtree.
    """

    max_restarts: int = 3
    period: float = 5.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential delay before restarting a crashed child.

    Attributes:
        initial: Delay before the first restart.
        maximum: Cap on the delay (jitter included).
        multiplier: Growth factor per consecutive restart.
        jitter: Random spread, as a fraction of the delay (0.2 is ±20 %).
        reset_after: A child that ran this long before crashing starts over at `initial`.
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    reset_after: float = 30.0

    def delay(self, attempt: int, rng: Callable[[float, float], float] = random.uniform) -> float:
        """Return the delay before restart number `attempt` (0-based)."""
        base = min(self.maximum, self.initial * self.multiplier**attempt)
        spread = base * self.jitter
        return max(0.0, min(self.maximum, base + rng(-spread, spread)))


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """How to start and supervise one child.

    Attributes:
        name: Unique among its siblings; the registry name is the dotted path.
        factory: Called with no argument for each (re)start; returns an `Actor`,
            a `Supervisor` or a `DynamicSupervisor`.
        restart: Restart type.
        shutdown: Seconds a graceful stop may take before the child is cancelled.
        start_timeout: Seconds an actor's `on_start` may take; past it the start
            fails with `TimeoutError`, exactly as if `on_start` had raised it
            (None: no limit). The default of 30 s is far beyond any start this
            server needs and still bounds a hung one, which would otherwise
            freeze the supervisor that waits for it. A supervisor's own start is
            bounded by its children's.
        capacity: Mailbox bound.
        overflow: Mailbox overflow policy.
        send_timeout: Under WAIT, how long `tell` waits for room before raising
            `MailboxFullError` (None: no limit).
        soft_limit: Depth at which the actor reports itself degraded (default 80 %).
        backoff: Restart backoff for this child, overriding the supervisor's.
        stash_capacity: Bound of the actor's stash (`Actor.stash`).
        decider: Maps a crash to a `Directive` (default: always RESTART), e.g.
            to stop on a bad credential instead of restarting in a loop.
    """

    name: str
    factory: Callable[[], Any]
    restart: Restart = field(default=Restart.PERMANENT, kw_only=True)
    shutdown: float = field(default=5.0, kw_only=True)
    start_timeout: float | None = field(default=DEFAULT_START_TIMEOUT, kw_only=True)
    capacity: int = field(default=1000, kw_only=True)
    overflow: OverflowPolicy = field(default=OverflowPolicy.WAIT, kw_only=True)
    send_timeout: float | None = field(default=None, kw_only=True)
    soft_limit: int | None = field(default=None, kw_only=True)
    backoff: Backoff | None = field(default=None, kw_only=True)
    decider: Callable[[Exception], Directive] | None = field(default=None, kw_only=True)
    stash_capacity: int = field(default=100, kw_only=True)

    def __post_init__(self) -> None:
        if not self.name or "." in self.name:
            raise ValueError(f"child name must be non-empty and without dots: {self.name!r}")
