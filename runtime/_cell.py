"""The cell: the persistent identity of one child (mailbox, ref, state, watchers).

The cell outlives the actor instances it runs, which is what keeps a supervised
child's ref and mailbox stable across restarts.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ._actor import Actor, ActorRef, _TaskCrashed
from ._exceptions import ActorDeadError, MailboxFullError
from ._introspection import ActorInfo, FailureInfo
from ._mailbox import Mailbox
from ._messages import STOP, Ask, Down
from ._state import ActorState

if TYPE_CHECKING:
    from ._introspection import SupervisorInfo
    from ._system import ActorSystem

__all__ = ["DEFAULT_STASH_CAPACITY", "Cell", "Runnable"]

logger = logging.getLogger("runtime")

DEFAULT_STASH_CAPACITY = 100

_STASHED: Any = object()

# The actor loop yields to the scheduler at least this often even when every
# handler returns without waiting, so a busy actor cannot starve the others.
_YIELD_MASK = 127


class Runnable(Protocol):
    """What a cell can run besides an `Actor`: the supervisors."""

    kind: str

    async def _run(self, cell: Cell, task_status: TaskStatus[Any]) -> None: ...

    def _request_stop(self) -> None: ...

    def _snapshot(self, cell: Cell) -> SupervisorInfo: ...


Factory = Callable[[], Any]


class Cell:
    """The persistent identity of one child: mailbox, ref, state, watchers."""

    def __init__(self, path: str, name: str, system: ActorSystem, mailbox: Mailbox) -> None:
        self.path = path
        self.name = name
        self.system = system
        self.mailbox = mailbox
        self.ref: ActorRef[Any] = ActorRef(self)
        self.kind = "actor"
        self.state = ActorState.STARTING
        self.restarts = 0
        self.last_failure: FailureInfo | None = None
        self.backoff_until: float | None = None
        self.started_at = 0.0
        self.watchers: dict[int, ActorRef[Any]] = {}
        self.instance: Any = None
        self.idle_timeout: float | None = None
        self.current: Any = None
        self.stashed: deque[Any] = deque()
        self.stash_capacity = DEFAULT_STASH_CAPACITY
        self.stop_requested = False

    def child_path(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def set_state(self, new: ActorState) -> None:
        self.state.check_transition(new)
        self.state = new

    # -- running -----------------------------------------------------------

    async def run(
        self,
        factory: Factory,
        *,
        task_status: TaskStatus[Any],
        start_timeout: float | None = None,
    ) -> str:
        """Create the instance with `factory` and run it until it exits.

        `task_status.started(ref)` is called once `on_start` finished; an error
        before that propagates to the starter. A stop requested meanwhile ends
        the start: `on_start` finishes, `on_stop` runs and the starter gets
        `ActorDeadError`.

        Args:
            factory: Makes the instance.
            task_status: Told once the instance has started.
            start_timeout: Limit of an actor's `on_start` (None: none); past it
                the start fails with `TimeoutError`.

        Returns:
            ``"stopped"`` on a normal exit, ``"idle"`` when passivated.
        """
        if self.state is ActorState.STOPPING:
            # The stop came before this task ran: nothing has started to stop.
            raise self._stopped_while_starting()
        self.set_state(ActorState.STARTING)
        self.mailbox.reopen()
        self.stop_requested = False
        self.started_at = self.system.clock.now()
        instance = factory()
        self.instance = instance
        if isinstance(instance, Actor):
            self.kind = "actor"
            return await self._run_actor(instance, task_status, start_timeout)
        if not hasattr(instance, "_run"):
            raise TypeError(f"factory of {self.path!r} returned {instance!r}, not an actor")
        runnable: Runnable = instance
        self.kind = runnable.kind
        await runnable._run(self, task_status)
        return "stopped"

    async def _run_actor(
        self, actor: Actor[Any], task_status: TaskStatus[Any], start_timeout: float | None
    ) -> str:
        actor.ref = self.ref
        actor.name = self.path
        actor.system = self.system
        error: Exception | None = None
        reason = "stopped"
        async with anyio.create_task_group() as task_group:
            actor._task_group = task_group
            try:
                reason = await self._run_started(actor, task_status, start_timeout)
            except Exception as exc:
                # Raised outside the task group below, so that the starter and the
                # supervisor see the actor's own exception, not a group around it.
                error = exc
            finally:
                # The actor's own tasks never outlive it.
                actor._task_group = None
                task_group.cancel_scope.cancel()
        if error is not None:
            raise error
        return reason

    async def _run_started(
        self, actor: Actor[Any], task_status: TaskStatus[Any], start_timeout: float | None
    ) -> str:
        if start_timeout is None:
            await actor.on_start()
        else:
            with anyio.move_on_after(start_timeout) as start_scope:
                await actor.on_start()
            if start_scope.cancelled_caught:
                raise TimeoutError(
                    f"on_start of {self.path!r} did not finish within {start_timeout} s"
                )
        if self.state is ActorState.STOPPING:
            # Stopped while starting: release what on_start took, and end the start
            # instead of running an actor nobody wants any more.
            if STOP in self.mailbox._control:
                self.mailbox._control.remove(STOP)
            await actor.on_stop()
            raise self._stopped_while_starting()
        self.set_state(ActorState.RUNNING)
        task_status.started(self.ref)
        try:
            reason = await self._loop(actor)
        except Exception as crash:
            await self._stop_after_crash(actor, crash)
            raise
        if self.state is ActorState.RUNNING:
            self.set_state(ActorState.STOPPING)
        await actor.on_stop()
        return reason

    async def _stop_after_crash(self, actor: Actor[Any], crash: Exception) -> None:
        # The crash is what the supervisor and its decider must see: an on_stop that
        # fails as well is logged and noted on the crash, never put in its place.
        try:
            await actor.on_stop()
        except Exception as stop_error:
            logger.error(
                "%s: on_stop failed after a crash (%r)", self.path, crash, exc_info=stop_error
            )
            crash.add_note(f"on_stop then failed too: {stop_error!r}")

    def _stopped_while_starting(self) -> ActorDeadError:
        return ActorDeadError(f"actor {self.path!r} was stopped while starting")

    async def _loop(self, actor: Actor[Any]) -> str:
        try:
            return await self._serve(actor)
        finally:
            # Stashed messages go back to the mailbox: the next instance gets them
            # after a restart, and a final stop turns them into dead letters.
            self.current = None
            if self.stashed:
                self.unstash_all()

    async def _serve(self, actor: Actor[Any]) -> str:
        mailbox = self.mailbox
        handle = actor.handle
        # The hot path reads the mailbox's queues directly (see Mailbox.get_nowait).
        control = mailbox._control
        items = mailbox._items
        putters = mailbox._putters
        loop = mailbox._loop
        count = 0
        idle_timeout = self.idle_timeout
        # Only user messages count as activity: control items (Down, stop) do not
        # keep an idle actor alive. Idleness is measured on the system's clock.
        clock = self.system.clock
        last_message = clock.now() if idle_timeout is not None else 0.0
        while True:
            if control:
                item = control.popleft()
            elif items:
                item = items.popleft()
                mailbox.processed += 1
                if putters:
                    putters.popleft().set()
                if idle_timeout is not None:
                    last_message = clock.now()
            else:
                if mailbox.closed:
                    return "stopped"
                if idle_timeout is None:
                    if loop is None:
                        await mailbox.wait_readable()
                        continue
                    # Mailbox.wait_readable inlined for asyncio: a bare future.
                    waiter = mailbox._getter = loop.create_future()
                    try:
                        await waiter
                    finally:
                        if mailbox._getter is waiter:
                            mailbox._getter = None
                else:
                    deadline = last_message + idle_timeout
                    if clock.now() < deadline:
                        await self._wait_readable_until(deadline)
                    if clock.now() >= deadline and self._idle():
                        return "idle"
                continue
            self.current = item
            if type(item) is Ask:
                try:
                    result = await handle(item.message)
                except Exception as exc:
                    error = ActorDeadError(f"actor {self.path!r} crashed handling the request")
                    error.__cause__ = exc
                    item.set_error(error)
                    raise
                else:
                    if self.current is item:  # not stashed
                        item.set_result(result)
                finally:
                    # Cancelled mid-request (shutdown deadline): the asker must not hang.
                    if not item.done and self.current is item:
                        item.set_error(ActorDeadError(f"actor {self.path!r} was stopped"))
            elif item is STOP:
                self.stop_requested = True
                return "stopped"
            elif type(item) is _TaskCrashed:
                raise item.error
            else:
                await handle(item)
            count += 1
            if not count & _YIELD_MASK:
                await anyio.lowlevel.checkpoint()

    async def _wait_readable_until(self, deadline: float) -> None:
        """Wait until the mailbox has an item or the system's clock reaches `deadline`."""
        clock = self.system.clock
        # The injected clock only offers sleep, so a timer task owns the deadline and
        # cancels the wait (one scope, the task group's, for both outcomes).
        async with anyio.create_task_group() as timer_group:

            async def timer() -> None:
                await clock.sleep(deadline - clock.now())
                timer_group.cancel_scope.cancel()

            timer_group.start_soon(timer)
            await self.mailbox.wait_readable()
            timer_group.cancel_scope.cancel()

    def _idle(self) -> bool:
        mailbox = self.mailbox
        if not mailbox.is_empty() or self.stashed:
            return False
        # Close at once, with no wait in between, so that nothing can slip into
        # the mailbox of an actor that is passivating.
        mailbox.close()
        return True

    def stash(self) -> None:
        """Set the current item aside (see `Actor.stash`)."""
        item = self.current
        if item is None:
            raise RuntimeError("stash() is only valid while handling a message")
        if len(self.stashed) >= self.stash_capacity:
            raise MailboxFullError(
                f"stash of {self.path!r} is full ({self.stash_capacity} messages)"
            )
        self.stashed.append(item)
        self.current = _STASHED

    def unstash_all(self) -> None:
        """Put the stashed items back at the front of the mailbox, in order."""
        stashed, self.stashed = self.stashed, deque()
        self.mailbox.prepend(stashed)

    def request_stop(self) -> None:
        """Ask the running instance to stop gracefully (does not wait).

        A cell that already stopped has nothing to stop: this is a no-op then, so
        that a stop racing with the actor's own exit is harmless.
        """
        if self.state in (ActorState.STOPPED, ActorState.FAILED):
            return
        if self.state is not ActorState.STOPPING:
            self.set_state(ActorState.STOPPING)
        if isinstance(self.instance, Actor):
            self.mailbox.put_control(STOP)
        elif self.instance is not None:
            runnable: Runnable = self.instance
            runnable._request_stop()

    # -- outcomes, decided by the supervisor -------------------------------

    def record_failure(self, error: BaseException) -> None:
        self.last_failure = FailureInfo.from_exception(error, self.system.clock.wall())

    def mark_restarting(self, error: BaseException | None) -> None:
        """The instance is gone and another will start: keep the mailbox, tell watchers."""
        self.set_state(ActorState.RESTARTING)
        self._notify("restarting", error)

    def terminate(self, state: ActorState, error: BaseException | None = None) -> None:
        """Stop for good: close the mailbox (failing queued asks) and tell watchers."""
        self.set_state(state)
        self.backoff_until = None
        self.mailbox.close()
        self._notify("failed" if state is ActorState.FAILED else "stopped", error)

    def add_watcher(self, watcher: ActorRef[Any]) -> None:
        if self.mailbox.closed:
            watcher._mailbox.put_control(Down(self.ref, "noproc"))
        else:
            self.watchers[id(watcher._cell)] = watcher

    def _notify(self, reason: str, error: BaseException | None) -> None:
        if not self.watchers:
            return
        down = Down(self.ref, reason, error)
        for watcher in list(self.watchers.values()):
            if not watcher._mailbox.put_control(down):
                self.watchers.pop(id(watcher._cell), None)

    def snapshot(self) -> ActorInfo | SupervisorInfo:
        if self.kind != "actor" and self.instance is not None:
            runnable: Runnable = self.instance
            return runnable._snapshot(self)
        return ActorInfo(
            name=self.name,
            path=self.path,
            kind="actor",
            state=self.state,
            restarts=self.restarts,
            last_failure=self.last_failure,
            backoff_until=self.backoff_wall(),
            mailbox=self.mailbox.statistics(),
        )

    def backoff_wall(self) -> float | None:
        if self.backoff_until is None:
            return None
        clock = self.system.clock
        return clock.wall() + max(0.0, self.backoff_until - clock.now())
