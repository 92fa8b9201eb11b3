"""Lifecycle states of actors and supervisors, with guarded transitions."""

from __future__ import annotations

import enum

__all__ = ["ActorState"]


class ActorState(enum.Enum):
    """Where an actor or supervisor is in its life."""

    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"

    def check_transition(self, new: ActorState) -> None:
        """Raise `RuntimeError` unless moving from this state to `new` is allowed."""
        if new not in _ALLOWED[self]:
            raise RuntimeError(f"invalid actor state transition {self.value} -> {new.value}")


_S = ActorState
_ALLOWED: dict[ActorState, frozenset[ActorState]] = {
    _S.STARTING: frozenset(
        {_S.STARTING, _S.RUNNING, _S.RESTARTING, _S.STOPPING, _S.STOPPED, _S.FAILED}
    ),
    _S.RUNNING: frozenset({_S.RESTARTING, _S.STOPPING, _S.STOPPED, _S.FAILED}),
    _S.RESTARTING: frozenset({_S.STARTING, _S.RESTARTING, _S.STOPPING, _S.STOPPED, _S.FAILED}),
    _S.STOPPING: frozenset({_S.STOPPING, _S.RESTARTING, _S.STOPPED, _S.FAILED}),
    _S.STOPPED: frozenset({_S.STARTING, _S.STOPPED, _S.FAILED}),
    _S.FAILED: frozenset({_S.STARTING, _S.STOPPED, _S.FAILED}),
}
