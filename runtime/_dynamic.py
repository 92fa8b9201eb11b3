"""A supervisor of keyed children started on demand, passivated when idle."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import anyio

from ._actor import Actor
from ._cell import Cell
from ._exceptions import ActivationLimitError, ActorDeadError, ActorError
from ._mailbox import Mailbox, OverflowPolicy
from ._spec import (
    DEFAULT_START_TIMEOUT,
    Backoff,
    ChildSpec,
    Directive,
    Restart,
    RestartIntensity,
)
from ._state import ActorState
from ._supervisor import SupervisorBase, _Child

if TYPE_CHECKING:
    from ._actor import ActorRef

__all__ = ["DynamicSupervisor"]


class _Activation:
    __slots__ = ("child", "error", "started")

    def __init__(self, child: _Child) -> None:
        self.child = child
        self.started = anyio.Event()
        self.error: BaseException | None = None


class DynamicSupervisor(SupervisorBase):
    """Start one actor per key on demand (one_for_one), stop it when idle.

    Children are not in the registry; reach them with `get` / `get_or_start`.
    A passivated or stopped child's ref is dead; the next `get_or_start`
    starts a new actor with a new ref.

    Args:
        idle_timeout: Stop a child that received no message for this many
            seconds (None: never).
        max_children: Limit of live children (None: no limit).
        capacity: Mailbox bound of each child.
        overflow: Mailbox overflow policy of each child.
        restart: Restart type of each child (a crash restarts it by default).
        shutdown: Graceful stop deadline of each child.
        start_timeout: Limit of each child's `on_start` (see `ChildSpec`).
        intensity: Restart limit over all children, then escalate.
        backoff: Delay restarts (off by default).
        decider: Maps a child's crash to a `Directive` (default: restart).
    """

    kind = "dynamic_supervisor"

    def __init__(
        self,
        *,
        idle_timeout: float | None = None,
        max_children: int | None = None,
        capacity: int = 1000,
        overflow: OverflowPolicy = OverflowPolicy.WAIT,
        restart: Restart = Restart.TRANSIENT,
        shutdown: float = 5.0,
        start_timeout: float | None = DEFAULT_START_TIMEOUT,
        intensity: RestartIntensity | None = None,
        backoff: Backoff | None = None,
        decider: Callable[[Exception], Directive] | None = None,
    ) -> None:
        super().__init__(intensity=intensity or RestartIntensity(), backoff=backoff)
        self.idle_timeout = idle_timeout
        self.max_children = max_children
        self.capacity = capacity
        self.overflow = overflow
        self.restart = restart
        self.shutdown = shutdown
        self.start_timeout = start_timeout
        self.decider = decider
        self._by_key: dict[Hashable, _Activation] = {}

    def _initial_children(self, cell: Cell) -> list[_Child]:
        self._by_key = {}
        return []

    def _forget(self, child: _Child) -> None:
        if child in self._children:
            self._children.remove(child)
        activation = self._by_key.get(child.key)
        if activation is not None and activation.child is child:
            del self._by_key[child.key]

    def get(self, key: Hashable) -> ActorRef[Any] | None:
        """Return the live child for `key`, or None (does not wait)."""
        activation = self._by_key.get(key)
        if activation is None or not activation.started.is_set() or activation.error:
            return None
        return activation.child.cell.ref

    def keys(self) -> list[Hashable]:
        """Return the keys of the live children."""
        return list(self._by_key)

    async def get_or_start(self, key: Hashable, factory: Callable[[], Actor[Any]]) -> ActorRef[Any]:
        """Return the child for `key`, starting it with `factory` if there is none.

        Concurrent callers for one key get the same actor. Waits until the
        actor's `on_start` finished.

        Raises:
            ActivationLimitError: `max_children` children are live.
            ActorDeadError: The supervisor is not running, or `stop_child`
                stopped the child while it started.
            Exception: Whatever `on_start` raised (to every waiting caller;
                the others get an `ActorError` chained to it).
        """
        activation = self._by_key.get(key)
        if activation is not None:
            await activation.started.wait()
            if activation.error is not None:
                raise ActorError(f"starting {key!r} failed") from activation.error
            if activation.child.cell.ref.is_alive:
                return activation.child.cell.ref
            activation = None
        cell = self._cell
        if cell is None or self._tg is None:
            raise ActorDeadError(f"dynamic supervisor {self.name!r} is not running")
        if self.max_children is not None and len(self._by_key) >= self.max_children:
            raise ActivationLimitError(
                f"{self.name!r} has {len(self._by_key)} live children (max {self.max_children})"
            )
        name = str(key)
        spec = ChildSpec(
            name.replace(".", "_") or "_",
            factory,
            restart=self.restart,
            shutdown=self.shutdown,
            start_timeout=self.start_timeout,
            capacity=self.capacity,
            overflow=self.overflow,
            decider=self.decider,
        )
        path = cell.child_path(name)
        system = cell.system
        mailbox = Mailbox(
            self.capacity, self.overflow, name=path, on_dead_letter=system._record_dead_letter
        )
        child_cell = Cell(path, name, system, mailbox)
        child_cell.idle_timeout = self.idle_timeout
        child = _Child(spec, child_cell, key)
        activation = _Activation(child)
        self._by_key[key] = activation
        self._children.append(child)
        try:
            return await self._start(child)
        except Exception as exc:
            activation.error = exc
            self._forget(child)
            if not child.stopping:  # else the stop ends it
                child_cell.terminate(ActorState.FAILED, exc)
            raise
        finally:
            activation.started.set()

    async def stop_child(self, key: Hashable) -> None:
        """Stop the child for `key` gracefully and forget it; waits until it stopped.

        A no-op if there is no child for `key` (it may have stopped by itself,
        or been passivated, just before). A child still starting is stopped as
        a supervised child is: its start ends (within the shutdown deadline)
        and `get_or_start` raises `ActorDeadError`.
        """
        activation = self._by_key.get(key)
        if activation is None:
            return
        # Not waiting for the start to end: a hung on_start would hold the stop
        # until the start limit instead of the shutdown deadline.
        await self._stop(activation.child, restarting=False)
        self._forget(activation.child)
