"""The outbound queue of one front-end socket."""

from __future__ import annotations

import collections
import math
from collections.abc import AsyncIterator, Callable

import anyio

__all__ = ["DEFAULT_OUTBOX_CAPACITY", "SocketOutbox"]

DEFAULT_OUTBOX_CAPACITY = 256


class SocketOutbox:
    """A bounded queue of text frames for one socket, filled by actors, drained by its writer.

    Producers (a chat actor, the log fan-out) never wait on it: when it is full the
    socket is too slow to keep up, and the outbox closes itself so that the writer ends
    the connection (the front-end reconnects) instead of holding every producer up.

    A bare deque and, only while the writer waits, one event: every open socket has an
    outbox, most of them idle, so it holds as little as it can (no memory stream). A
    writer that runs only while there is something to send sets `on_wake` and takes
    the frames with `take_nowait` instead of waiting in `receive`.

    Args:
        capacity: Frames that may wait for the writer.
    """

    __slots__ = (
        "__weakref__",
        "_discarded",
        "_frames",
        "_wakeup",
        "capacity",
        "closed",
        "on_wake",
        "overflowed",
        "sent",
    )

    def __init__(self, capacity: int = DEFAULT_OUTBOX_CAPACITY) -> None:
        if capacity < 1 or capacity == math.inf:
            raise ValueError("capacity must be a positive integer")
        # Made for the first frame: an idle socket's outbox has none.
        self._frames: collections.deque[str] | None = None
        # Set by the writer while it waits for a frame (or the close).
        self._wakeup: anyio.Event | None = None
        self._discarded = False
        self.on_wake: Callable[[], None] | None = None
        """Called (sync, must not wait) when a frame is queued or the outbox closes."""
        self.capacity = capacity
        self.closed = False
        self.overflowed = False
        self.sent = 0

    def send_nowait(self, text: str) -> bool:
        """Queue ``text``; never waits.

        Returns:
            ``False`` if the outbox is closed, or was full and has now closed itself.
        """
        if self.closed:
            return False
        frames = self._frames
        if frames is None:
            frames = self._frames = collections.deque()
        elif len(frames) >= self.capacity:
            self.overflowed = True
            self.close()
            return False
        frames.append(text)
        self.sent += 1
        self._wake()
        return True

    def close(self) -> None:
        """Accept no more frames; the writer still gets those already queued. Idempotent."""
        self.closed = True
        self._wake()

    def discard(self) -> None:
        """Close the outbox and drop what is still queued (the socket is gone). Idempotent."""
        self._discarded = True
        self._frames = None
        self.close()

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            wakeup.set()
        if self.on_wake is not None:
            self.on_wake()

    def take_nowait(self) -> str | None:
        """Return the next queued frame, or None if none is queued (or it was discarded)."""
        if self._discarded or not self._frames:
            return None
        return self._frames.popleft()

    @property
    def discarded(self) -> bool:
        """Whether the outbox was discarded (the socket is gone)."""
        return self._discarded

    async def receive(self) -> str:
        """Wait for the next frame.

        Raises:
            anyio.EndOfStream: The outbox is closed and drained.
            anyio.ClosedResourceError: The outbox was discarded.
        """
        while True:
            if self._discarded:
                raise anyio.ClosedResourceError
            if self._frames:
                return self._frames.popleft()
            if self.closed:
                raise anyio.EndOfStream
            wakeup = self._wakeup
            if wakeup is None:
                wakeup = self._wakeup = anyio.Event()
            await wakeup.wait()

    async def frames(self) -> AsyncIterator[str]:
        """Yield the queued frames in order until the outbox is closed and drained."""
        while True:
            try:
                text = await self.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
            yield text
