"""Frozen snapshots of the supervision tree, for health endpoints and tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._mailbox import MailboxStatistics
from ._state import ActorState

__all__ = ["ActorInfo", "FailureInfo", "SupervisorInfo"]


@dataclass(frozen=True, slots=True)
class FailureInfo:
    """The last exception that ended an actor or supervisor.

    Attributes:
        type: Qualified name of the exception class.
        message: ``str()`` of the exception.
        time: Wall-clock time of the failure (seconds since the epoch).
    """

    type: str
    message: str
    time: float

    @classmethod
    def from_exception(cls, error: BaseException, time: float) -> FailureInfo:
        kind = type(error)
        return cls(f"{kind.__module__}.{kind.__qualname__}", str(error), time)

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "time": self.time}


def _common(
    info: ActorInfo | SupervisorInfo,
) -> dict[str, Any]:
    return {
        "name": info.name,
        "path": info.path,
        "kind": info.kind,
        "state": info.state.value,
        "restarts": info.restarts,
        "last_failure": info.last_failure.to_dict() if info.last_failure else None,
        "backoff_until": info.backoff_until,
    }


@dataclass(frozen=True, slots=True)
class ActorInfo:
    """A frozen view of one actor.

    Attributes:
        name: The child name in its supervisor (a dynamic child's key as text).
        path: Dotted path from the root, also its registry name.
        kind: ``"actor"``.
        state: Lifecycle state.
        restarts: How many times it was restarted.
        last_failure: The last crash, if any.
        backoff_until: Wall-clock time its restart waits for, if in backoff.
        mailbox: Mailbox statistics (depth, capacity, dead letters, ...).
    """

    name: str
    path: str
    kind: str
    state: ActorState
    restarts: int
    last_failure: FailureInfo | None
    backoff_until: float | None
    mailbox: MailboxStatistics

    @property
    def degraded(self) -> bool:
        """Whether it is not running normally or its mailbox is over the soft limit."""
        return self.state is not ActorState.RUNNING or self.mailbox.over_soft_limit

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        stats = self.mailbox
        data = _common(self)
        data["degraded"] = self.degraded
        data["mailbox"] = {
            "depth": stats.depth,
            "capacity": stats.capacity,
            "overflow": stats.overflow.value,
            "received": stats.received,
            "processed": stats.processed,
            "dropped": stats.dropped,
            "rejected": stats.rejected,
            "dead_letters": stats.dead_letters,
            "high_water": stats.high_water,
            "waiting_senders": stats.waiting_senders,
            "soft_limit": stats.soft_limit,
            "dead_letter_reasons": dict(stats.dead_letter_reasons),
        }
        return data


@dataclass(frozen=True, slots=True)
class SupervisorInfo:
    """A frozen view of a supervisor and, recursively, its children.

    Attributes:
        name: The child name in its parent (the system name at the root).
        path: Dotted path from the root (``""`` for the root).
        kind: ``"supervisor"`` or ``"dynamic_supervisor"``.
        state: Lifecycle state.
        restarts: How many times it was restarted by its parent.
        last_failure: The last failure, if any.
        backoff_until: Wall-clock time its restart waits for, if in backoff.
        strategy: Restart strategy name.
        max_restarts: Restart intensity: restarts allowed ...
        period: ... within this many seconds.
        recent_restarts: Restarts inside the current window.
        over_intensity: Whether it gave up (at the root: the system failed).
        children: Snapshots of the children, in start order.
    """

    name: str
    path: str
    kind: str
    state: ActorState
    restarts: int
    last_failure: FailureInfo | None
    backoff_until: float | None
    strategy: str
    max_restarts: int
    period: float
    recent_restarts: int
    over_intensity: bool
    children: tuple[ActorInfo | SupervisorInfo, ...]

    @property
    def degraded(self) -> bool:
        """Whether it or anything below it is not running normally."""
        return (
            self.state is not ActorState.RUNNING
            or self.over_intensity
            or any(child.degraded for child in self.children)
        )

    def find(self, path: str) -> ActorInfo | SupervisorInfo | None:
        """Return the snapshot of the node at `path` below (or at) this one."""
        if self.path == path:
            return self
        for child in self.children:
            if child.path == path:
                return child
            if isinstance(child, SupervisorInfo):
                found = child.find(path)
                if found is not None:
                    return found
        return None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (children nested)."""
        data = _common(self)
        data.update(
            degraded=self.degraded,
            strategy=self.strategy,
            max_restarts=self.max_restarts,
            period=self.period,
            recent_restarts=self.recent_restarts,
            over_intensity=self.over_intensity,
            children=[child.to_dict() for child in self.children],
        )
        return data
