"""Messages the runtime itself delivers, and the internal control items."""

from __future__ import annotations

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
    cancellation) it is abandoned and a late reply is dropped.
    """

    __slots__ = ("_event", "abandoned", "done", "error", "message", "value")

    def __init__(self, message: Any, event: Any) -> None:
        self.message = message
        self._event = event
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.abandoned = False

    def set_result(self, value: Any) -> None:
        if not self.done:
            self.done = True
            self.value = value
            self._event.set()

    def set_error(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.error = error
            self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
