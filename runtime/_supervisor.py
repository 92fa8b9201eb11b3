"""Supervisors: start children in order, restart them by OTP rules, stop them in reverse."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup, TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._exceptions import ActorDeadError, NameTakenError, RestartIntensityError
from ._introspection import ActorInfo, SupervisorInfo
from ._spec import Backoff, ChildSpec, Directive, Restart, RestartIntensity, Strategy
from ._state import ActorState

if TYPE_CHECKING:
    from ._actor import ActorRef
    from ._cell import Cell
    from ._system import ActorSystem

__all__ = ["Supervisor", "SupervisorBase"]

logger = logging.getLogger("runtime.supervisor")


class _Child:
    __slots__ = (
        "attempt",
        "cell",
        "done",
        "generation",
        "key",
        "running",
        "scope",
        "spec",
        "stopping",
    )

    def __init__(self, spec: ChildSpec, cell: Cell, key: Any = None) -> None:
        self.spec = spec
        self.cell = cell
        self.key = key
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None
        self.running = False
        # Set while the supervisor stops the child on purpose, so that the exit
        # is not mistaken for one to act on (stops may come from other tasks).
        self.stopping = False
        self.generation = 0
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class _Exited:
    child: _Child
    generation: int
    outcome: BaseException | str


@dataclass(frozen=True, slots=True)
class _RestartDue:
    children: tuple[_Child, ...]


class _StopRequest:
    pass


_Event = _Exited | _RestartDue | _StopRequest


class _Status:
    """Forwards `started()` and remembers that it happened."""

    __slots__ = ("_inner", "started_flag")

    def __init__(self, inner: TaskStatus[Any]) -> None:
        self._inner = inner
        self.started_flag = False

    def started(self, value: Any = None) -> None:
        self.started_flag = True
        self._inner.started(value)


class SupervisorBase:
    """What `Supervisor` and `DynamicSupervisor` share: the child wrappers,
    restart intensity, backoff and ordered shutdown."""

    kind = "supervisor"
    strategy = Strategy.ONE_FOR_ONE

    def __init__(self, *, intensity: RestartIntensity, backoff: Backoff | None) -> None:
        self.intensity = intensity
        self.backoff = backoff
        self._children: list[_Child] = []
        self._tg: TaskGroup | None = None
        self._cell: Cell | None = None
        self._events: MemoryObjectSendStream[_Event] | None = None
        self._restart_times: deque[float] = deque()
        self._escalate = True
        # The restart in progress, cancelled by a stop request so that a start that
        # takes long does not hold up the supervisor's shutdown.
        self._restart_scope: anyio.CancelScope | None = None
        self.over_intensity = False
        self.escalated = False

    @property
    def name(self) -> str:
        """The supervisor's path (``""`` at the root)."""
        return self._cell.path if self._cell is not None else ""

    @property
    def system(self) -> ActorSystem:
        if self._cell is None:
            raise ActorDeadError("supervisor is not running")
        return self._cell.system

    # -- to be specialised --------------------------------------------------

    def _initial_children(self, cell: Cell) -> list[_Child]:
        return []

    def _restart_targets(self, child: _Child) -> list[_Child]:
        return [child]

    def _forget(self, child: _Child) -> None:
        # OTP keeps a stopped transient or permanent child in the list; a temporary
        # one is deleted.
        if child.spec.restart is Restart.TEMPORARY and child in self._children:
            self._children.remove(child)

    # -- running -------------------------------------------------------------

    async def _run(self, cell: Cell, task_status: TaskStatus[Any]) -> None:
        if self._tg is not None:
            raise RuntimeError(f"supervisor {cell.path!r} is already running")
        self._cell = cell
        cell.mailbox.refuse_all()
        self._restart_times.clear()
        self.over_intensity = False
        self.escalated = False
        send, receive = anyio.create_memory_object_stream[_Event](math.inf)
        self._events = send
        error: Exception | None = None
        try:
            # The event streams close only after every child wrapper has finished.
            async with send, receive, anyio.create_task_group() as tg:
                self._tg = tg
                try:
                    self._children = self._initial_children(cell)
                    for child in self._children:
                        await self._start(child)
                        if cell.state is ActorState.STOPPING:
                            # Stopped while starting, as an actor whose on_start finished:
                            # start no further child, stop those started (below), and
                            # tell the starter.
                            raise cell._stopped_while_starting()
                except Exception as exc:
                    error = exc
                    await self._shutdown_all()
                else:
                    cell.set_state(ActorState.RUNNING)
                    task_status.started(cell.ref)
                    try:
                        await self._serve(receive)
                    except Exception as exc:
                        # Over the restart intensity, or a child's crash escalated.
                        error = exc
                    finally:
                        await self._shutdown_all()
                tg.cancel_scope.cancel()
        finally:
            self._tg = None
            # Cancelled from outside: nothing ran the graceful path, so close the
            # mailboxes here (failing pending asks) instead of leaving live-looking refs.
            for child in self._children:
                if child.cell.state not in (ActorState.STOPPED, ActorState.FAILED):
                    child.cell.terminate(ActorState.STOPPED)
            self._events = None
        if error is not None:
            raise error

    def _request_stop(self) -> None:
        if self._events is not None:
            self._events.send_nowait(_StopRequest())
        if self._restart_scope is not None:
            self._restart_scope.cancel()

    async def _serve(self, events: MemoryObjectReceiveStream[_Event]) -> None:
        async for event in events:
            if isinstance(event, _StopRequest):
                return
            if isinstance(event, _Exited):
                await self._on_exit(event)
            else:
                await self._restart(event.children)

    async def _child_main(self, child: _Child, *, task_status: TaskStatus[Any]) -> None:
        # Each child runs in its own wrapper that reports how it ended, so that
        # a crash reaches the supervisor instead of cancelling the task group.
        generation = child.generation
        done = child.done
        status = _Status(task_status)
        outcome: BaseException | str = "killed"
        try:
            with anyio.CancelScope() as scope:
                child.scope = scope
                try:
                    outcome = await child.cell.run(
                        child.spec.factory,
                        task_status=status,
                        start_timeout=child.spec.start_timeout,
                    )
                except Exception as exc:
                    if not status.started_flag:
                        raise
                    outcome = exc
            if not status.started_flag:
                # Only `_stop` cancels this scope: past its deadline while starting.
                raise ActorDeadError(f"actor {child.cell.path!r} was stopped while starting")
        finally:
            # Whoever stops the child waits for this, however its start ended.
            if done is not None:
                done.set()
        if self._events is not None:
            self._events.send_nowait(_Exited(child, generation, outcome))

    async def _start(self, child: _Child) -> ActorRef[Any]:
        if self._tg is None:
            raise ActorDeadError(f"supervisor {self.name!r} is not running")
        child.generation += 1
        child.done = anyio.Event()
        child.running = True
        child.stopping = False
        try:
            ref: ActorRef[Any] = await self._tg.start(self._child_main, child)
        except BaseException as exc:
            child.running = False
            if isinstance(exc, Exception) and not child.stopping:
                child.cell.record_failure(exc)
            raise
        child.cell.backoff_until = None
        return ref

    async def _stop(self, child: _Child, *, restarting: bool) -> None:
        """Stop `child` gracefully within its shutdown deadline, then cancel it."""
        cell = child.cell
        if child.running:
            child.stopping = True
            cell.request_stop()
            done = child.done
            assert done is not None
            with anyio.move_on_after(child.spec.shutdown):
                await done.wait()
            if not done.is_set():
                logger.warning(
                    "%s did not stop within %s s; cancelling it", cell.path, child.spec.shutdown
                )
                if child.scope is not None:
                    child.scope.cancel()
                await done.wait()
            child.running = False
        if restarting:
            cell.mark_restarting(None)
        elif cell.state not in (ActorState.STOPPED, ActorState.FAILED):
            cell.terminate(ActorState.STOPPED)

    async def _shutdown_all(self) -> None:
        for child in reversed(self._children):
            await self._stop(child, restarting=False)

    # -- deciding ------------------------------------------------------------

    async def _on_exit(self, event: _Exited) -> None:
        child, outcome = event.child, event.outcome
        error = outcome if isinstance(outcome, BaseException) else None
        cell = child.cell
        if error is not None:
            cell.record_failure(error)
            logger.error("%s crashed", cell.path or "root", exc_info=error)
        if event.generation != child.generation or not child.running or child.stopping:
            return  # stopped on purpose meanwhile; already logged above
        child.running = False
        decider = child.spec.decider
        directive = Directive.RESTART
        if decider is not None and isinstance(error, Exception):
            directive = decider(error)
        if directive is Directive.STOP:
            cell.terminate(ActorState.FAILED, error)
            self._forget(child)
            return
        if directive is Directive.ESCALATE:
            assert isinstance(error, Exception)
            cell.terminate(ActorState.FAILED, error)
            self.escalated = True
            if self._escalate:
                raise error
            self.system._root_failed()
            logger.critical("%s escalated a crash to the root; the system is failed", cell.path)
            return
        restart = child.spec.restart
        if (
            outcome == "idle"
            or restart is Restart.TEMPORARY
            or (restart is Restart.TRANSIENT and error is None)
        ):
            cell.terminate(ActorState.FAILED if error else ActorState.STOPPED, error)
            self._forget(child)
            return
        if not self._allow_restart():
            cell.terminate(ActorState.FAILED, error)
            message = (
                f"supervisor {self.name or 'root'!r} exceeded {self.intensity.max_restarts} "
                f"restarts in {self.intensity.period} s (last: {cell.path!r})"
            )
            self.over_intensity = True
            if self._escalate:
                raise RestartIntensityError(message) from error
            self.system._root_failed()
            logger.critical("%s; the system is failed", message)
            return
        cell.mark_restarting(error)
        targets = self._restart_targets(child)
        for sibling in reversed(targets):
            if sibling is not child and sibling.running:
                await self._stop(sibling, restarting=True)
        delay = self._backoff_delay(child)
        if delay > 0:
            clock = self.system.clock
            cell.backoff_until = clock.now() + delay
            logger.info("restarting %s in %.3f s", cell.path, delay)
            assert self._tg is not None
            self._tg.start_soon(self._restart_later, delay, tuple(targets))
        else:
            await self._restart(tuple(targets))

    def _allow_restart(self) -> bool:
        now = self.system.clock.now()
        window = self._restart_times
        window.append(now)
        while window and window[0] <= now - self.intensity.period:
            window.popleft()
        return len(window) <= self.intensity.max_restarts

    def _backoff_delay(self, child: _Child) -> float:
        backoff = child.spec.backoff or self.backoff
        if backoff is None:
            return 0.0
        if self.system.clock.now() - child.cell.started_at >= backoff.reset_after:
            child.attempt = 0
        delay = backoff.delay(child.attempt)
        child.attempt += 1
        return delay

    async def _restart_later(self, delay: float, children: tuple[_Child, ...]) -> None:
        await self.system.clock.sleep(delay)
        if self._events is not None:
            self._events.send_nowait(_RestartDue(children))

    async def _restart(self, children: tuple[_Child, ...]) -> None:
        with anyio.CancelScope() as scope:
            self._restart_scope = scope
            try:
                for child in children:
                    if child not in self._children or child.running:
                        continue
                    child.cell.restarts += 1
                    try:
                        await self._start(child)
                    except Exception as exc:
                        # A failed restart counts as another crash of the child, and
                        # the children after it wait (as OTP's do) until it is up:
                        # they are started again with it, as its restart targets.
                        child.running = True
                        assert self._events is not None
                        self._events.send_nowait(_Exited(child, child.generation, exc))
                        return
            finally:
                self._restart_scope = None

    # -- introspection ---------------------------------------------------------

    def _snapshot(self, cell: Cell) -> SupervisorInfo:
        now = cell.system.clock.now()
        recent = sum(1 for t in self._restart_times if t > now - self.intensity.period)
        children: list[ActorInfo | SupervisorInfo] = [c.cell.snapshot() for c in self._children]
        return SupervisorInfo(
            name=cell.name,
            path=cell.path,
            kind=self.kind,
            state=cell.state,
            restarts=cell.restarts,
            last_failure=cell.last_failure,
            backoff_until=cell.backoff_wall(),
            strategy=self.strategy.value,
            max_restarts=self.intensity.max_restarts,
            period=self.intensity.period,
            recent_restarts=recent,
            over_intensity=self.over_intensity,
            children=tuple(children),
        )


class Supervisor(SupervisorBase):
    """Supervise a fixed list of children with OTP semantics.

    Children start in order (each `on_start` finished before the next starts)
    and stop in reverse order, each within its shutdown deadline. A supervisor
    instance may be returned by a factory again: each run starts afresh.

    Args:
        children: Child specs, in start order; names must be unique.
        strategy: Which children to restart when one crashes.
        intensity: Restart limit over all children, then escalate.
        backoff: Delay restarts (off by default).
    """

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: RestartIntensity | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(intensity=intensity or RestartIntensity(), backoff=backoff)
        names = [spec.name for spec in children]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate child names in {names}")
        self.strategy = strategy
        self._specs = list(children)

    def _initial_children(self, cell: Cell) -> list[_Child]:
        return [self._new_child(cell, spec) for spec in self._specs]

    def _new_child(self, cell: Cell, spec: ChildSpec) -> _Child:
        return _Child(spec, cell.system._cell_for(cell.child_path(spec.name), spec))

    def _restart_targets(self, child: _Child) -> list[_Child]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        index = self._children.index(child)
        candidates = (
            self._children if self.strategy is Strategy.ONE_FOR_ALL else self._children[index:]
        )
        # Those still waiting for an earlier restart that failed come along too.
        return [
            c
            for c in candidates
            if c is child or c.running or c.cell.state is ActorState.RESTARTING
        ]

    def child(self, name: str) -> ActorRef[Any]:
        """Return the ref of child `name` (stable across its restarts).

        Raises:
            KeyError: No such child.
        """
        for child in self._children:
            if child.spec.name == name:
                return child.cell.ref
        raise KeyError(f"no child {name!r} in {self.name or 'root'!r}")

    async def start_child(self, spec: ChildSpec) -> ActorRef[Any]:
        """Add `spec` as the last child and start it; returns once it has started.

        Raises:
            NameTakenError: A child of that name exists.
            ActorDeadError: The child was stopped (`stop_child`) while starting.
            TimeoutError: Its `on_start` took longer than the spec's ``start_timeout``.
            Exception: Whatever its `on_start` raised (the child is not added).
        """
        if self._cell is None or self._tg is None:
            raise ActorDeadError(f"supervisor {self.name!r} is not running")
        if any(c.spec.name == spec.name for c in self._children):
            raise NameTakenError(f"child {spec.name!r} exists in {self.name or 'root'!r}")
        child = self._new_child(self._cell, spec)
        self._children.append(child)
        self._specs.append(spec)
        try:
            return await self._start(child)
        except Exception as exc:
            if child in self._children:
                self._children.remove(child)
                self._specs.remove(spec)
            if not child.stopping:  # else the stop ends it
                child.cell.terminate(ActorState.FAILED, exc)
            raise

    async def stop_child(self, name: str) -> None:
        """Stop child `name` gracefully and remove it; waits until it stopped.

        Raises:
            KeyError: No such child.
        """
        for child in self._children:
            if child.spec.name == name:
                await self._stop(child, restarting=False)
                if child in self._children:
                    self._children.remove(child)
                    self._specs.remove(child.spec)
                return
        raise KeyError(f"no child {name!r} in {self.name or 'root'!r}")
