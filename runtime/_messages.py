"""Messages the runtime itself delivers, and the internal control items."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._actor import ActorRef

__all__ = ["Down"]


@dataclass(frozen=True, slots=True)
class Down:
    """Tell a watcher that a watched actor stopped or is restarting.

    Attributes:
        ref: The watched actor's ref (stable: after a restart it works again).
        reason: ``"restarting"``, ``"stopped"``, ``"failed"`` or ``"noproc"``
            (it was not alive when the watch was set).
        error: The exception that ended it, if it crashed.
    """

    ref: ActorRef[Any]
    reason: str
    error: BaseException | None = None


class _Stop:
    """Control item: finish the current message, run `on_stop`, exit."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STOP"


STOP = _Stop()


class Ask:
    """A one-shot reply slot carried in the mailbox for `ActorRef.ask`.

    The slot belongs to the caller: once the caller stops waiting (timeout or
    cancellation) it is abandoned and a late reply is dropped. Under asyncio it
    waits on a bare future, which costs far less than an event plus a cancel
    scope per request; elsewhere it uses anyio primitives.
    """

    __slots__ = (
        "_event",
        "_future",
        "abandoned",
        "deadline",
        "done",
        "error",
        "message",
        "value",
    )

    def __init__(self, message: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.message = message
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.abandoned = False
        self.deadline = 0.0
        if loop is not None:
            self._future: asyncio.Future[None] | None = loop.create_future()
            self._event: Any = None
        else:
            self._future = None
            self._event = native_event()

    def _wake(self) -> None:
        future = self._future
        if future is not None:
            if not future.done():
                future.set_result(None)
        else:
            assert self._event is not None
            self._event.set()

    def set_result(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self.value = value
            self._wake()

    def set_error(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.error = error
            self._wake()

    def expire(self) -> None:
        """Wake the waiter without a reply: it raises `TimeoutError`."""
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    async def wait(self, deadlines: Deadlines | None, timeout: float | None) -> None:  # noqa: ASYNC109
        """Wait for the reply; raise `TimeoutError` after `timeout` seconds.

        Under asyncio the deadline is kept by `deadlines` (one timer for many
        requests) instead of a cancel scope per request.
        """
        future = self._future
        if future is None:
            assert self._event is not None
            if timeout is None:
                await self._event.wait()
                return
            with _trio().move_on_after(timeout) as scope:
                await self._event.wait()
            if scope.cancelled_caught and not self.done:
                raise TimeoutError
            return
        if timeout is not None:
            assert deadlines is not None
            deadlines.add(self, timeout)
        await future
        if not self.done:
            raise TimeoutError


class Deadlines:
    """Expire asks with one timer: deadlines mostly arrive in increasing order.

    A per-request `call_later` (or cancel scope) costs as much as the rest of
    a round trip, so requests wait in a FIFO and a single timer fires for the
    earliest one. A request whose deadline is earlier than the last queued one
    gets a timer of its own.
    """

    __slots__ = ("_loop", "_queue", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: deque[Ask] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, slot: Ask, timeout: float) -> None:
        loop = self._loop
        slot.deadline = deadline = loop.time() + timeout
        queue = self._queue
        while queue and queue[0].done:
            queue.popleft()
        if queue and queue[-1].deadline > deadline:
            loop.call_at(deadline, slot.expire)
            return
        queue.append(slot)
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        queue = self._queue
        while queue:
            slot = queue[0]
            if not slot.done and slot.deadline > now:
                self._timer = self._loop.call_at(slot.deadline, self._fire)
                return
            queue.popleft()
            slot.expire()


_trio_module: Any = None


def _trio() -> Any:
    # anyio runs on asyncio or trio, so off asyncio this is trio (imported only then).
    global _trio_module
    if _trio_module is None:
        import trio

        _trio_module = trio
    return _trio_module


def native_event() -> Any:
    """Return a trio Event: the anyio wrapper costs a backend lookup per event."""
    return _trio().Event()


def running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running asyncio loop, or None under another backend."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
