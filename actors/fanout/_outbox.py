"""The outbound queue of one front-end socket."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["DEFAULT_OUTBOX_CAPACITY", "SocketOutbox"]

DEFAULT_OUTBOX_CAPACITY = 256


class SocketOutbox:
    """A bounded queue of text frames for one socket, filled by actors, drained by its writer.

    Producers (a chat actor, the log fan-out) never wait on it: when it is full the
    socket is too slow to keep up, and the outbox closes itself so that the writer ends
    the connection (the front-end reconnects) instead of holding every producer up.

    Args:
        capacity: Frames that may wait for the writer.
    """

    def __init__(self, capacity: int = DEFAULT_OUTBOX_CAPACITY) -> None:
        if capacity < 1 or capacity == math.inf:
            raise ValueError("capacity must be a positive integer")
        send, receive = anyio.create_memory_object_stream[str](capacity)
        self._send: MemoryObjectSendStream[str] = send
        self._receive: MemoryObjectReceiveStream[str] = receive
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
        try:
            self._send.send_nowait(text)
        except anyio.WouldBlock:
            self.overflowed = True
            self.close()
            return False
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.closed = True
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Accept no more frames; the writer still gets those already queued. Idempotent."""
        self.closed = True
        self._send.close()

    def discard(self) -> None:
        """Close the outbox and drop what is still queued (the socket is gone). Idempotent."""
        self.close()
        self._receive.close()

    async def receive(self) -> str:
        """Wait for the next frame.

        Raises:
            anyio.EndOfStream: The outbox is closed and drained.
            anyio.ClosedResourceError: The outbox was discarded.
        """
        return await self._receive.receive()

    async def frames(self) -> AsyncIterator[str]:
        """Yield the queued frames in order until the outbox is closed and drained."""
        while True:
            try:
                text = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
            yield text
