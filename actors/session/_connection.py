"""The session's port to the router: a `RouterConnection` Protocol and its WebSocket adapter.

Errors of the ``websockets`` client are translated where they enter, into
`RouterConnectionError` chained to the original (httpcore's ``map_exceptions``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from actors.router import FEATURES_HEADER

from ._exceptions import RouterConnectionError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["Connector", "RouterConnection", "WebSocketConnector", "parse_object"]

logger = logging.getLogger(__name__)

# Our own sockets trust the router; the agents' 1 MiB limit is the router's business.
_MAX_FRAME = 64 * 2**20


class RouterConnection(Protocol):
    """One open connection to the router, carrying frames (JSON objects).

    A socket encodes and decodes them at this edge; a connection in our own process
    hands the objects over as they are.
    """

    @property
    def features(self) -> frozenset[str]:
        """The extensions the router named in its handshake response
        (``X-GenAI-Router``, e.g. ``correlation``); empty for the original router."""

    async def send(self, frame: dict[str, Any]) -> None:
        """Send one frame, which the connection then owns; waits for room to send it.

        Raises:
            RouterConnectionError: The socket is closed or broken.
        """

    async def recv(self) -> dict[str, Any]:
        """Wait for the next frame (a JSON object) and return it; read-only to the caller.

        Frames that are not JSON objects are skipped.

        Raises:
            RouterConnectionError: The socket closed (cleanly or not).
        """

    async def aclose(self) -> None:
        """Close the socket; waits for the closing handshake (bounded)."""


class Connector(Protocol):
    """Opens connections to one router."""

    @property
    def url(self) -> str:
        """The router's WebSocket URL."""

    async def connect(self, headers: Mapping[str, str]) -> RouterConnection:
        """Open a socket with these handshake headers.

        Raises:
            RouterConnectionError: The router cannot be reached or refused the handshake.
        """


def parse_object(data: str | bytes) -> dict[str, Any] | None:
    """Return the JSON object in a frame's text, or None if it holds anything else."""
    try:
        frame = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return frame if isinstance(frame, dict) else None


@contextlib.contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except (WebSocketException, OSError, TimeoutError) as exc:
        raise RouterConnectionError(f"router connection failed: {exc!r}") from exc


class _WebSocket:
    __slots__ = ("_ws", "features")

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        named = ws.response.headers.get(FEATURES_HEADER, "") if ws.response else ""
        self.features = frozenset(filter(None, (part.strip() for part in named.split(","))))

    async def send(self, frame: dict[str, Any]) -> None:
        with _mapped():
            await self._ws.send(json.dumps(frame))

    async def recv(self) -> dict[str, Any]:
        while True:
            with _mapped():
                data = await self._ws.recv()
            frame = parse_object(data)
            if frame is not None:
                return frame
            logger.debug("ignored frame that is not a JSON object: %.200r", data)

    async def aclose(self) -> None:
        with contextlib.suppress(WebSocketException, OSError, TimeoutError):
            await self._ws.close()


class WebSocketConnector:
    """Open router sockets with the ``websockets`` asyncio client.

    Args:
        url: The router's URL, e.g. ``ws://127.0.0.1:8080/ws``.
        open_timeout: Seconds allowed for the TCP connect and the handshake.
        close_timeout: Seconds allowed for the closing handshake.
        ping_interval: Seconds between WebSocket pings on long-lived sockets
            (``None``: no pings); a missed pong closes the socket.
    """

    def __init__(
        self,
        url: str,
        *,
        open_timeout: float = 5.0,
        close_timeout: float = 1.0,
        ping_interval: float | None = 20.0,
    ) -> None:
        self._url = url
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval

    @property
    def url(self) -> str:
        return self._url

    async def connect(self, headers: Mapping[str, str]) -> RouterConnection:
        with _mapped():
            ws = await connect(
                self._url,
                additional_headers=dict(headers),
                open_timeout=self.open_timeout,
                close_timeout=self.close_timeout,
                ping_interval=self.ping_interval,
                max_size=_MAX_FRAME,
                compression=None,
                # Not read from the environment: a proxy lookup per socket costs more
                # than the rest of opening it, and the router is ours to reach directly.
                proxy=None,
            )
        return _WebSocket(ws)
