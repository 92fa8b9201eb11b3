"""ChatDrain: how the chats of one server stop without leaving a turn unanswered.

A stop goes through three phases:

1. `begin` (``draining``): no new turn starts; the turns in flight keep running.
2. The deadline passes: a turn still running is cut short and answered with the
   `SHUTTING_DOWN` error frame (its user message is already stored).
3. No turn is left (``closed``): the front-end sockets flush their queued frames and close.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio

__all__ = ["SHUTTING_DOWN", "ChatDrain"]

_FINISH_SECONDS = 2.0

SHUTTING_DOWN = "The server is shutting down. Send your message again in a moment"


class ChatDrain:
    """Shared by every chat actor and front-end socket of one server.

    Sync methods never wait; ``wait_…`` methods do.
    """

    def __init__(self) -> None:
        self._begun = anyio.Event()
        self._closed = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._cuts: set[anyio.CancelScope] = set()
        self._expired = False

    @property
    def draining(self) -> bool:
        """Whether a stop has begun (new turns are refused)."""
        return self._begun.is_set()

    @property
    def closed(self) -> bool:
        """Whether the turns are over and the sockets should close."""
        return self._closed.is_set()

    @property
    def turns(self) -> int:
        """The number of turns in flight."""
        return len(self._cuts)

    def begin(self) -> None:
        """Start draining: new turns are refused, those in flight go on. Idempotent."""
        self._begun.set()

    @contextlib.contextmanager
    def turn(self) -> Iterator[anyio.CancelScope]:
        """Count one turn in flight for the duration of the block.

        Yields:
            The scope to run the turn's long wait in: it is cancelled at the deadline
            (at once if the deadline has passed already).
        """
        cut = anyio.CancelScope()
        if self._expired:
            cut.cancel()
        if not self._cuts:
            self._idle = anyio.Event()
        self._cuts.add(cut)
        try:
            yield cut
        finally:
            self._cuts.discard(cut)
            if not self._cuts:
                self._idle.set()

    async def wait_closed(self) -> None:
        """Wait until `drain` has finished: the sockets should flush and close."""
        await self._closed.wait()

    async def drain(self, grace: float) -> None:
        """Begin (see `begin`), wait for the turns in flight to end, then close.

        Turns still waiting at the deadline are cut short: they answer with the
        `SHUTTING_DOWN` error frame and end. Waits ``grace`` seconds and a little more
        at most.
        """
        self.begin()
        with anyio.move_on_after(grace):
            await self._idle.wait()
        self._expired = True
        for cut in list(self._cuts):
            cut.cancel()
        # The turns cut short store their error reply and queue its frame.
        with anyio.move_on_after(_FINISH_SECONDS):
            await self._idle.wait()
        self._closed.set()
