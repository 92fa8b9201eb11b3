"""Messages the runtime itself delivers, and the internal control items."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

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

    __slots__ = ("_event", "_future", "abandoned", "done", "error", "message", "value")

    def __init__(self, message: Any, loop: asyncio.AbstractEventLoop | None) -> None:
        self.message = message
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.abandoned = False
        if loop is not None:
            self._future: asyncio.Future[None] | None = loop.create_future()
            self._event: anyio.Event | None = None
        else:
            self._future = None
            self._event = anyio.Event()

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

    async def wait(self, timeout: float | None) -> None:  # noqa: ASYNC109
        """Wait for the reply; raise `TimeoutError` after `timeout` seconds."""
        future = self._future
        if future is None:
            assert self._event is not None
            with anyio.fail_after(timeout):
                await self._event.wait()
            return
        if timeout is None:
            await future
            return
        timer = future.get_loop().call_later(timeout, _expire, future)
        try:
            await future
        finally:
            timer.cancel()
        if not self.done:
            raise TimeoutError


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def running_loop() -> asyncio.AbstractEventLoop | None:
    """Return the running asyncio loop, or None under another backend."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
