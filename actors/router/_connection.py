"""One WebSocket connection: identify it, then pump frames between it and the hub.

Reading and writing run in two tasks. Frames for the socket wait in a bounded outbox
that only this connection's sender task drains, so a slow or dead peer delays nobody
but itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from ._identity import identify

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from ._hub import RouterHub

__all__ = [
    "CLOSE_MISSING_IDENTITY",
    "CLOSE_OUTBOX_OVERFLOW",
    "DEFAULT_OUTBOX_CAPACITY",
    "StreamOutbox",
    "serve_connection",
]

logger = logging.getLogger(__name__)

CLOSE_MISSING_IDENTITY = 4000
CLOSE_OUTBOX_OVERFLOW = int(CloseCode.TRY_AGAIN_LATER)  # 1013
DEFAULT_OUTBOX_CAPACITY = 1000


class StreamOutbox:
    """A bounded outbox on an anyio memory stream."""

    def __init__(self, capacity: int = DEFAULT_OUTBOX_CAPACITY) -> None:
        self._send, self.receive = anyio.create_memory_object_stream[str](capacity)
        self.overflowed = anyio.Event()

    def send_nowait(self, text: str) -> bool:
        """Queue ``text``; return ``False`` if the outbox is full or closed."""
        try:
            self._send.send_nowait(text)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            return False
        return True

    def overflow(self) -> None:
        """End the outbox and have the connection closed with code 1013."""
        self.overflowed.set()
        self._send.close()

    def close(self) -> None:
        """End the outbox; the sender stops once it has drained it."""
        self._send.close()


async def serve_connection(
    ws: ServerConnection, hub: RouterHub, *, capacity: int = DEFAULT_OUTBOX_CAPACITY
) -> None:
    """Serve one accepted socket until it closes.

    A socket without an identity is closed with code 4000, reason ``"Missing
    Authorization header"``, as upstream does after accepting it.
    """
    identity = identify(ws.request.headers.get, hub.table.keys) if ws.request else None
    if identity is None:
        await ws.close(CLOSE_MISSING_IDENTITY, "Missing Authorization header")
        return
    outbox = StreamOutbox(capacity)
    conn_id = hub.open(identity, outbox)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_send_loop, ws, outbox)
            tg.start_soon(_close_on_overflow, ws, outbox)
            try:
                while True:
                    hub.receive(conn_id, await ws.recv(decode=False))
            except ConnectionClosed:
                pass
            finally:
                hub.close(conn_id)
                outbox.close()
                tg.cancel_scope.cancel()
    except* ConnectionClosed:
        pass


async def _send_loop(ws: ServerConnection, outbox: StreamOutbox) -> None:
    async with outbox.receive:
        async for text in outbox.receive:
            await ws.send(text)


async def _close_on_overflow(ws: ServerConnection, outbox: StreamOutbox) -> None:
    await outbox.overflowed.wait()
    await ws.close(CLOSE_OUTBOX_OVERFLOW, "Outbox overflow")
