"""The actor system: root task group, root supervisor, registry, clock."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from ._actor import ActorRef
from ._cell import Cell
from ._clock import Clock, SystemClock
from ._dynamic import DynamicSupervisor
from ._exceptions import NameTakenError
from ._introspection import SupervisorInfo
from ._mailbox import Mailbox
from ._registry import Registry
from ._spec import Backoff, ChildSpec, RestartIntensity, Strategy
from ._state import ActorState
from ._supervisor import Supervisor

__all__ = ["ActorSystem", "DeadLetter", "open_actor_system"]

logger = logging.getLogger("runtime")

_KEEP_DEAD_LETTERS = 50


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One undelivered message, kept for the health view."""

    actor: str
    message: str
    reason: str


class ActorSystem:
    """A supervision tree with its registry; create it with `open_actor_system`.

    Every supervised child is registered under its dotted path (``"router"``,
    ``"router.session"``); `ref_of` looks one up.
    """

    def __init__(self, name: str, clock: Clock, root: Supervisor) -> None:
        self.name = name
        self.clock = clock
        self.registry = Registry()
        self._root = root
        self._cells: dict[str, Cell] = {}
        self._root_cell = Cell("", name, self, Mailbox(1, name=name))
        self._dead_letters: deque[DeadLetter] = deque(maxlen=_KEEP_DEAD_LETTERS)
        self._failed = anyio.Event()

    # -- children ----------------------------------------------------------

    async def start(self, spec: ChildSpec) -> ActorRef[Any]:
        """Start `spec` as a new child of the root; returns once its `on_start` finished.

        Raises:
            NameTakenError: A root child of that name exists.
            Exception: Whatever its `on_start` raised.
        """
        return await self._root.start_child(spec)

    async def stop(self, name: str) -> None:
        """Stop root child `name` gracefully and remove it; waits until it stopped."""
        await self._root.stop_child(name)

    def ref_of(self, path: str) -> ActorRef[Any]:
        """Return the ref of the supervised child at dotted `path` (e.g. ``"router.session"``).

        Raises:
            KeyError: No such child.
        """
        return self.registry.lookup(path)

    def supervisor(self, path: str) -> Supervisor | DynamicSupervisor:
        """Return the running supervisor instance at `path` (``""`` is the root).

        Raises:
            KeyError: No running supervisor there.
        """
        cell = self._root_cell if path == "" else self._cells.get(path)
        instance = cell.instance if cell is not None else None
        if not isinstance(instance, Supervisor | DynamicSupervisor):
            raise KeyError(f"no supervisor at {path!r}")
        return instance

    def _cell_for(self, path: str, spec: ChildSpec) -> Cell:
        # The cell (and so the ref) of a path survives restarts of the parent.
        cell = self._cells.get(path)
        if cell is not None:
            if cell.state not in (ActorState.STOPPED, ActorState.FAILED):
                raise NameTakenError(f"an actor is running at {path!r}")
            return cell
        name = path.rpartition(".")[2]
        mailbox = Mailbox(
            spec.capacity,
            spec.overflow,
            name=path,
            send_timeout=spec.send_timeout,
            soft_limit=spec.soft_limit,
            on_dead_letter=self._record_dead_letter,
        )
        cell = Cell(path, name, self, mailbox)
        cell.stash_capacity = spec.stash_capacity
        self.registry.register(path, cell.ref)
        self._cells[path] = cell
        return cell

    def _record_dead_letter(self, actor: str, message: Any, reason: str) -> None:
        self._dead_letters.append(DeadLetter(actor, repr(message)[:200], reason))

    # -- health ------------------------------------------------------------

    def snapshot(self) -> SupervisorInfo:
        """Return a frozen snapshot of the whole tree (does not wait)."""
        return self._root._snapshot(self._root_cell)

    def recent_dead_letters(self) -> tuple[DeadLetter, ...]:
        """Return the last few undelivered messages, oldest first."""
        return tuple(self._dead_letters)

    @property
    def failed(self) -> bool:
        """Whether the root gave up (over its restart intensity, or a crash escalated to it).

        The system then stays up but is not ready.
        """
        root = self._root
        return root.over_intensity or root.escalated or self._root_cell.state is ActorState.FAILED

    async def wait_failed(self) -> None:
        """Wait until the root gives up (`failed` turns true); returns at once if it has.

        Past that point nothing in the tree recovers by itself: OTP stops the node,
        and a server should likewise stop (non-zero) so that its process manager
        starts it afresh. Waits forever if the system stops without failing, so
        run it in a task that the system's lifetime bounds.
        """
        await self._failed.wait()

    def _root_failed(self) -> None:
        self._failed.set()

    @property
    def degraded(self) -> bool:
        """Whether anything in the tree is not running normally."""
        return self.snapshot().degraded

    @property
    def ready(self) -> bool:
        """Whether the root runs, is not failed, and every child runs."""
        snapshot = self.snapshot()
        return (
            not self.failed
            and snapshot.state is ActorState.RUNNING
            and all(child.state is ActorState.RUNNING for child in snapshot.children)
        )


@asynccontextmanager
async def open_actor_system(
    *children: ChildSpec,
    name: str = "system",
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    intensity: RestartIntensity | None = None,
    backoff: Backoff | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[ActorSystem]:
    """Start an actor system, yield it, and stop it on exit.

    The children start in order before the body runs; an exception in an
    `on_start` propagates from here. On a normal exit the children stop in
    reverse order, each within its shutdown deadline. If the body raises or is
    cancelled, everything is cancelled. When the root exceeds its restart
    intensity the system stays up but `failed` (not ready).

    Args:
        children: Root children, in start order.
        name: The system's name (the root in snapshots).
        strategy: The root's restart strategy.
        intensity: The root's restart intensity.
        backoff: The root's restart backoff.
        clock: Time source (default: the event loop's clock).
    """
    root = Supervisor(children, strategy=strategy, intensity=intensity, backoff=backoff)
    root._escalate = False
    system = ActorSystem(name, clock or SystemClock(), root)
    cell = system._root_cell
    error: Exception | None = None
    async with anyio.create_task_group() as tg:
        try:
            await tg.start(_run_root, cell, root)
        except Exception as exc:
            error = exc
        else:
            try:
                yield system
            except Exception as exc:
                error = exc
                tg.cancel_scope.cancel()
            else:
                cell.request_stop()
    if error is not None:
        raise error


async def _run_root(cell: Cell, root: Supervisor, *, task_status: Any) -> None:
    try:
        await cell.run(lambda: root, task_status=task_status)
    except Exception as exc:
        cell.terminate(ActorState.FAILED, exc)
        cell.system._root_failed()
        raise
    finally:
        # Also on cancellation from outside.
        if cell.state not in (ActorState.STOPPED, ActorState.FAILED):
            cell.terminate(ActorState.STOPPED)
