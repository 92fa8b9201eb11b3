"""ChatDrain: how the chats of one server stop without leaving a message unanswered.

Every message a socket posts is admitted here and settled once it is answered, whether
it runs at once or waits behind another turn. A stop goes through three phases:

1. `begin` (``draining``): no new message is admitted; those admitted keep running,
   the queued ones included.
2. The deadline passes (``expired``): a turn still waiting for the master is cut short
   and answered with the `SHUTTING_DOWN` error frame, and so is every queued message
   that reaches the master after it (their user messages are stored first, as always).
3. Every admitted message is answered (``closed``): the front-end sockets flush their
   queued frames and close.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

__all__ = ["SHUTTING_DOWN", "ChatDrain"]

_FINISH_SECONDS = 2.0

SHUTTING_DOWN = "The server is shutting down. Send your message again in a moment"


class ChatDrain:
    """Shared by every chat actor and front-end socket of one server.

    Sync methods never wait; ``wait_…`` methods and `drain` do.
    """

    def __init__(self) -> None:
        self._begun = anyio.Event()
        self._closed = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._admitted = 0
        self._expired = False
        self._on_expiry: dict[object, Callable[[], None]] = {}
        self._on_closed: dict[object, Callable[[], None]] = {}

    @property
    def draining(self) -> bool:
        """Whether a stop has begun (new messages are refused)."""
        return self._begun.is_set()

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed: no turn may wait for the master any more."""
        return self._expired

    @property
    def closed(self) -> bool:
        """Whether the messages are answered and the sockets should close."""
        return self._closed.is_set()

    @property
    def admitted(self) -> int:
        """The number of messages admitted and not answered yet."""
        return self._admitted

    def begin(self) -> None:
        """Start draining: new messages are refused, those admitted go on. Idempotent."""
        self._begun.set()

    def admit(self) -> None:
        """Count one more accepted message, until `settle`."""
        if not self._admitted:
            self._idle = anyio.Event()
        self._admitted += 1

    def settle(self) -> None:
        """Count one admitted message as answered (once per `admit`)."""
        self._admitted -= 1
        if not self._admitted:
            self._idle.set()

    def on_expiry(self, key: object, callback: Callable[[], None]) -> None:
        """Call ``callback`` (sync, must not wait) when the deadline passes, under ``key``.

        A later call with the same key replaces it; `forget` removes it.
        """
        self._on_expiry[key] = callback

    def forget(self, key: object) -> None:
        """Remove the callback registered under ``key``, if any."""
        self._on_expiry.pop(key, None)

    def on_closed(self, key: object, callback: Callable[[], None]) -> None:
        """Call ``callback`` (sync, must not wait) once `drain` has finished, under ``key``
        (at once if it has). `forget_closed` removes it.

        What a socket registers instead of a task waiting in `wait_closed`: an idle
        socket holds no task for the stop.
        """
        if self.closed:
            callback()
        else:
            self._on_closed[key] = callback

    def forget_closed(self, key: object) -> None:
        """Remove the callback registered under ``key`` by `on_closed`, if any."""
        self._on_closed.pop(key, None)

    async def wait_closed(self) -> None:
        """Wait until `drain` has finished: the sockets should flush and close."""
        await self._closed.wait()

    async def drain(self, grace: float) -> None:
        """Begin (see `begin`), wait for the admitted messages to be answered, then close.

        Turns still waiting for the master at the deadline are cut short: they answer
        with the `SHUTTING_DOWN` error frame. Waits ``grace`` seconds and a little more
        at most.
        """
        self.begin()
        with anyio.move_on_after(grace):
            await self._idle.wait()
        self._expired = True
        for callback in list(self._on_expiry.values()):
            callback()
        # The turns cut short store their error reply and queue its frame.
        with anyio.move_on_after(_FINISH_SECONDS):
            await self._idle.wait()
        self._closed.set()
        callbacks, self._on_closed = self._on_closed, {}
        for callback in callbacks.values():
            callback()
