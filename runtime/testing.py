"""Helpers for tests that run the real runtime: a recording actor, a fake clock, probes."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any

import anyio

from ._actor import Actor, ActorRef
from ._introspection import ActorInfo, SupervisorInfo
from ._state import ActorState
from ._system import ActorSystem

__all__ = ["FakeClock", "RecordingActor", "wait_for", "wait_for_state"]

_POLL = 0.001


class RecordingActor(Actor[Any]):
    """Record every message; answer asks with `reply(message)` (default: the message).

    Args:
        reply: Computes the answer to each message.
        fail_on: Messages equal to this raise `RuntimeError` (a crash).
    """

    def __init__(self, reply: Callable[[Any], Any] | None = None, *, fail_on: Any = None) -> None:
        self.messages: list[Any] = []
        self._reply = reply
        self._fail_on = fail_on
        self._changed = anyio.Event()

    async def handle(self, message: Any) -> Any:
        self.messages.append(message)
        self._changed.set()
        self._changed = anyio.Event()
        if self._fail_on is not None and message == self._fail_on:
            raise RuntimeError(f"told to fail on {message!r}")
        return self._reply(message) if self._reply is not None else message

    async def wait_for_messages(self, count: int, *, timeout: float = 5.0) -> list[Any]:  # noqa: ASYNC109
        """Wait until at least `count` messages arrived; return them all.

        Raises:
            TimeoutError: Fewer arrived within `timeout`.
        """
        with anyio.fail_after(timeout):
            while len(self.messages) < count:
                await self._changed.wait()
        return list(self.messages)


class FakeClock:
    """A clock that moves only when `advance` is called; sleepers wake accordingly."""

    def __init__(self, start: float = 0.0, wall_start: float | None = None) -> None:
        self._now = start
        self._wall_offset = (time.time() if wall_start is None else wall_start) - start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._counter = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        event = anyio.Event()
        entry = (self._now + seconds, next(self._counter), event)
        heapq.heappush(self._sleepers, entry)
        try:
            await event.wait()
        finally:
            if not event.is_set():
                # Cancelled: a sleeper that left must not be counted or woken.
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock now."""
        return sum(1 for _, _, event in self._sleepers if not event.is_set())

    def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline passed."""
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()


async def wait_for(predicate: Callable[[], bool], *, timeout: float = 5.0) -> None:  # noqa: ASYNC109
    """Wait until `predicate()` is true, checking after every scheduling round.

    Raises:
        TimeoutError: Still false after `timeout` seconds.
    """
    with anyio.fail_after(timeout):
        # Snapshots have no change event to wait on, so the probe polls.
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(_POLL)


def _node(target: ActorSystem, path: str) -> ActorInfo | SupervisorInfo | None:
    return target.snapshot().find(path)


async def wait_for_state(
    target: ActorSystem | ActorRef[Any],
    name: str | None,
    state: ActorState,
    timeout: float = 5.0,  # noqa: ASYNC109
) -> ActorInfo | SupervisorInfo:
    """Wait until the node at path `name` (or the ref itself) is in `state`.

    Args:
        target: A system (then `name` is a dotted path) or a ref (then `name`
            is a child name below it, or None for the ref itself).
        name: See `target`.
        state: The state to wait for.
        timeout: Seconds before giving up.

    Returns:
        The snapshot of the node in that state.

    Raises:
        TimeoutError: Not reached within `timeout`.
    """
    if isinstance(target, ActorSystem):
        system, path = target, name or ""
    else:
        system = target._cell.system
        path = target.name if not name else target._cell.child_path(name)
    found: list[ActorInfo | SupervisorInfo] = []

    def reached() -> bool:
        if isinstance(target, ActorRef) and not name:
            info = target._cell.snapshot()
        else:
            info = _node(system, path)  # type: ignore[assignment]
        if info is not None and info.state is state:
            found.append(info)
            return True
        return False

    await wait_for(reached, timeout=timeout)
    return found[-1]
