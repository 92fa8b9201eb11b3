"""Serve the router over WebSocket with the ``websockets`` library's asyncio server."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from http import HTTPStatus
from typing import TYPE_CHECKING

from websockets.asyncio.server import serve

from ._connection import DEFAULT_OUTBOX_CAPACITY, serve_connection
from ._hub import RouterHub
from ._table import DEFAULT_MAX_FRAME_BYTES, RoutingTable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from websockets.asyncio.server import ServerConnection
    from websockets.http11 import Request, Response

    from ._identity import ApiKeys

__all__ = ["DEFAULT_PORT", "TRANSPORT_LIMIT_FACTOR", "RunningRouter", "open_router"]

DEFAULT_PORT = 8080
WS_PATH = "/ws"
TRANSPORT_LIMIT_FACTOR = 4
"""Frames up to this many times the frame limit are read and refused with an error
frame; larger ones make the transport close the socket with code 1009."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunningRouter:
    """A router serving on ``host:port``; ``url`` is the agents' ``ROUTER_WS_URL``."""

    host: str
    port: int
    hub: RouterHub

    @property
    def url(self) -> str:
        """The WebSocket URL of the router, ``ws://host:port/ws``."""
        return f"ws://{self.host}:{self.port}{WS_PATH}"


@contextlib.asynccontextmanager
async def open_router(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    keys: ApiKeys | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    outbox_capacity: int = DEFAULT_OUTBOX_CAPACITY,
    replay_registrations: bool = True,
    ping_interval: float | None = 20,
) -> AsyncIterator[RunningRouter]:
    """Serve the router at ``ws://host:port/ws`` for the duration of the block.

    Args:
        host: The interface to listen on.
        port: The port; 0 picks a free one (read it from the yielded value).
        keys: The back-end and master-agent API keys (upstream defaults if omitted).
        max_frame_bytes: Larger frames are refused with an error frame.
        outbox_capacity: Frames queued per connection before it is closed (1013).
        replay_registrations: Replay connected agents' registrations to a back-end
            that (re)connects.
        ping_interval: Seconds between WebSocket pings; ``None`` turns them off.

    Yields:
        The running router. Leaving the block closes every connection (code 1001)
        and waits for their handlers.

    Raises:
        OSError: The address cannot be bound.
    """
    hub = RouterHub(
        RoutingTable(
            keys, max_frame_bytes=max_frame_bytes, replay_registrations=replay_registrations
        )
    )
    handler = functools.partial(_handle, hub=hub, capacity=outbox_capacity)
    async with serve(
        handler,
        host,
        port,
        process_request=_only_ws_path,
        compression=None,
        max_size=max_frame_bytes * TRANSPORT_LIMIT_FACTOR,
        ping_interval=ping_interval,
    ) as server:
        bound_port = next(iter(server.sockets)).getsockname()[1]
        yield RunningRouter(host, bound_port, hub)


async def _handle(ws: ServerConnection, *, hub: RouterHub, capacity: int) -> None:
    await serve_connection(ws, hub, capacity=capacity)


def _only_ws_path(ws: ServerConnection, request: Request) -> Response | None:
    if request.path.partition("?")[0] != WS_PATH:
        return ws.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
    return None
