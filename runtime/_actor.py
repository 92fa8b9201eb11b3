"""Actors and the refs that address them."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup

from ._exceptions import ActorDeadError, MailboxFullError
from ._mailbox import MailboxStatistics
from ._messages import STOP, Ask

if TYPE_CHECKING:
    from ._cell import Cell
    from ._system import ActorSystem

__all__ = ["DEFAULT_ASK_TIMEOUT", "Actor", "ActorRef"]

logger = logging.getLogger("runtime")

MsgT = TypeVar("MsgT")
PosArgsT = TypeVarTuple("PosArgsT")

DEFAULT_ASK_TIMEOUT = 5.0
# A sender that never has to wait still yields this often, so a tight `tell`
# loop under a dropping policy cannot starve the event loop.
_YIELD_EVERY_SENDS = 128


class Actor(Generic[MsgT]):
    """Base class of actors: override `handle`, and `on_start` / `on_stop` if needed.

    The runtime sets `ref`, `name` and `system` before calling `on_start`. An
    actor handles one message at a time.
    """

    ref: ActorRef[MsgT]
    name: str
    system: ActorSystem
    _task_group: TaskGroup | None = None

    async def on_start(self) -> None:
        """Prepare the actor; an exception here reaches whoever started it."""

    async def handle(self, message: MsgT) -> Any:
        """Handle one message; the return value answers an `ask`.

        An exception crashes the actor (its supervisor decides what next) and a
        pending `ask` fails with `ActorDeadError` chained to it.
        """
        return None

    async def on_stop(self) -> None:
        """Release resources; called on a graceful stop and after a crash."""

    def watch(self, other: ActorRef[Any]) -> None:
        """Receive a `Down` message when `other` stops or restarts (does not wait)."""
        other.watch(self.ref)

    def unwatch(self, other: ActorRef[Any]) -> None:
        """Stop receiving `Down` messages about `other` (does not wait)."""
        other.unwatch(self.ref)

    def start_soon(
        self,
        fn: Callable[[*PosArgsT], Awaitable[Any]],
        *args: *PosArgsT,
        name: str | None = None,
    ) -> None:
        """Run ``fn(*args)`` as a task owned by this actor (does not wait).

        For work an actor must do besides handling messages, such as reading a
        socket. The task may be started from `on_start` on; it is cancelled after
        `on_stop`, when the actor stops or crashes. If it raises, the actor crashes
        with that exception, exactly as if `handle` had raised it, and its
        supervisor decides what next.

        Raises:
            RuntimeError: The actor is not running (before `on_start` or after it stopped).
        """
        task_group = self._task_group
        if task_group is None:
            raise RuntimeError(f"{type(self).__name__} is not running; cannot start a task")
        mailbox = self.ref._cell.mailbox

        async def guarded() -> None:
            try:
                await fn(*args)
            except Exception as exc:
                # Crash through the mailbox so that the failure takes the same path as
                # one in `handle` (on_stop, then the supervisor), not a task-group one.
                mailbox.put_control(_TaskCrashed(exc))

        task_group.start_soon(guarded, name=name or getattr(fn, "__qualname__", None))

    def stash(self) -> None:
        """Set the message being handled aside until `unstash_all` (does not wait).

        For phases where the actor cannot serve requests yet (e.g. while
        reconnecting). A stashed `ask` stays pending and is answered when the
        message is handled again. The stash is bounded; stashed messages go
        back to the mailbox if the actor restarts.

        Raises:
            MailboxFullError: The stash is full.
            RuntimeError: Called outside `handle`.
        """
        self.ref._cell.stash()

    def unstash_all(self) -> None:
        """Queue every stashed message again, ahead of the mailbox (does not wait)."""
        self.ref._cell.unstash_all()

    def stop(self) -> None:
        """Ask the runtime to stop this actor after the current message (does not wait).

        This is a normal exit: a `PERMANENT` child is started again by its supervisor.
        """
        self.ref._cell.mailbox.put_control(STOP)


class ActorRef(Generic[MsgT]):
    """The address of an actor, typed by the messages it accepts.

    The ref of a supervised child is stable across restarts: messages sent
    while it restarts wait in its mailbox.
    """

    __slots__ = ("_cell", "_mailbox")

    def __init__(self, cell: Cell) -> None:
        self._cell = cell
        self._mailbox = cell.mailbox

    @property
    def name(self) -> str:
        """The actor's path, which is also its registry name."""
        return self._cell.path

    @property
    def is_alive(self) -> bool:
        """Whether messages sent now will be handled (true while restarting)."""
        return not self._mailbox.closed

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.path!r} {self._cell.state.value}>"

    async def tell(self, message: MsgT) -> None:
        """Send `message` without waiting for it to be handled.

        Waits only under the WAIT overflow policy while the mailbox is full. A
        message to a stopped actor becomes a dead letter.

        Raises:
            MailboxFullError: The overflow policy refused the message.
        """
        mailbox = self._mailbox
        try:
            if mailbox.offer(message):
                mailbox._sends += 1
                if mailbox._sends % _YIELD_EVERY_SENDS == 0:
                    await anyio.lowlevel.checkpoint()
                return
            await mailbox.put(message)
        except ActorDeadError:
            pass

    def tell_nowait(self, message: MsgT) -> None:
        """Send `message`, never waiting; a full WAIT mailbox raises instead.

        Raises:
            MailboxFullError: The mailbox is full (WAIT or FAIL policy).
        """
        mailbox = self._mailbox
        try:
            accepted = mailbox.offer(message)
        except ActorDeadError:
            return
        if not accepted:
            mailbox.rejected += 1
            raise MailboxFullError(f"mailbox of {self._cell.path!r} is full")

    # A per-call deadline is part of ask's contract (DESIGN: ask has a default timeout).
    async def ask(
        self,
        message: MsgT,
        *,
        timeout: float | None = DEFAULT_ASK_TIMEOUT,  # noqa: ASYNC109
    ) -> Any:
        """Send `message` and wait for the value `handle` returns.

        Args:
            message: The request.
            timeout: Seconds to wait for the reply (including waiting for room in
                the mailbox); ``None`` waits forever. A late reply is dropped.

        Raises:
            TimeoutError: No reply before `timeout`.
            ActorDeadError: The actor is stopped, or stopped or crashed before
                replying (chained to the crash).
            MailboxFullError: The overflow policy refused the request.
        """
        mailbox = self._mailbox
        if mailbox.closed:
            raise ActorDeadError(f"actor {self._cell.path!r} is not running")
        loop = mailbox._loop
        slot = Ask(message, loop)
        try:
            if not mailbox.offer(slot):
                # Full under WAIT: waiting for room counts against the deadline.
                with anyio.fail_after(timeout):
                    await mailbox.put(slot)
                    await slot.wait(None, None)
            elif loop is not None and timeout is not None:
                # Slot.wait inlined: this is the hot path of every request.
                assert mailbox.deadlines is not None
                mailbox.deadlines.add(slot, timeout)
                await slot._future  # type: ignore[misc]
                if not slot.done:
                    raise TimeoutError
            else:
                await slot.wait(mailbox.deadlines, timeout)
        finally:
            if not slot.done:
                slot.abandoned = True
        if slot.error is not None:
            raise slot.error
        return slot.value

    def statistics(self) -> MailboxStatistics:
        """Return a frozen snapshot of the mailbox counters (does not wait)."""
        return self._mailbox.statistics()

    def watch(self, watcher: ActorRef[Any]) -> None:
        """Deliver `Down(self, reason)` to `watcher` when this actor stops or restarts.

        `Down` travels on the watcher's control channel, ahead of its user
        messages, so the watcher's message type must admit `Down`. The watch
        lasts until `unwatch`, across restarts of this actor (and a supervised
        ref that comes back after its parent restarted keeps its watchers); it
        is dropped once a `Down` finds the watcher stopped. If this actor is
        not alive now, `watcher` gets ``Down(self, "noproc")`` at once instead.
        Does not wait.
        """
        self._cell.add_watcher(watcher)

    def unwatch(self, watcher: ActorRef[Any]) -> None:
        """Remove a watch set by `watch` (does not wait)."""
        self._cell.watchers.pop(id(watcher._cell), None)

    def child(self, name: str) -> ActorRef[Any]:
        """Return the ref of child `name` of this supervisor (registry name ``f"{path}.{name}"``).

        Raises:
            KeyError: No such child.
        """
        return self._cell.system.registry.lookup(self._cell.child_path(name))


@dataclass(frozen=True, slots=True)
class _TaskCrashed:
    """Control item: a task started with `Actor.start_soon` raised `error`."""

    error: Exception
