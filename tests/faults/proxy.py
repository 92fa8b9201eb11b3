"""A TCP proxy for fault tests: put it between the server and a dependency, then cut
the line and restore it.

``open_proxy(host, port)`` listens on a free loopback port and forwards every
connection to ``host:port``; ``open_database_proxy(url)`` does so for a PostgreSQL URL,
reached over TCP or a Unix socket alike, and gives the URL through the proxy.
`TcpProxy.cut` closes every open connection and, until
`TcpProxy.restore`, closes each new one as soon as it is accepted: to the client the
dependency is down (connections reset, nothing answers a handshake), while the
dependency itself keeps running.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketAttribute
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import ByteReceiveStream, ByteSendStream, ByteStream, SocketStream

__all__ = ["TcpProxy", "open_database_proxy", "open_proxy"]


class TcpProxy:
    """Forwards loopback connections to a target; see `open_proxy`.

    Attributes:
        host: Where it listens (loopback).
        port: Its port.
        accepted: Connections accepted so far (forwarded or refused).
        refused: Connections closed at once because the line was cut.
    """

    def __init__(self, host: str, port: int, target: tuple[str, int] | str) -> None:
        self.host = host
        self.port = port
        self.accepted = 0
        self.refused = 0
        self._target = target
        self._cut = False
        self._open: set[anyio.CancelScope] = set()

    @property
    def is_cut(self) -> bool:
        """Whether the line is cut."""
        return self._cut

    @property
    def open_connections(self) -> int:
        """Connections being forwarded now."""
        return len(self._open)

    def cut(self) -> None:
        """Close every forwarded connection and refuse new ones until `restore`."""
        self._cut = True
        for scope in list(self._open):
            scope.cancel()

    def restore(self) -> None:
        """Forward new connections again."""
        self._cut = False

    async def _serve(self, client: SocketStream) -> None:
        self.accepted += 1
        async with client:
            if self._cut:
                self.refused += 1
                return
            with anyio.CancelScope() as scope:
                self._open.add(scope)
                try:
                    async with (
                        await self._connect() as upstream,
                        anyio.create_task_group() as tg,
                    ):
                        tg.start_soon(_pump, client, upstream, tg.cancel_scope)
                        tg.start_soon(_pump, upstream, client, tg.cancel_scope)
                except OSError:
                    pass  # the target refused or went away: the client sees a close
                finally:
                    self._open.discard(scope)

    async def _connect(self) -> ByteStream:
        if isinstance(self._target, str):
            return await anyio.connect_unix(self._target)
        return await anyio.connect_tcp(*self._target)


async def _pump(source: ByteReceiveStream, sink: ByteSendStream, both: anyio.CancelScope) -> None:
    # Either side closing ends the pair: the proxy has no half-open connections.
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        both.cancel()


@contextlib.asynccontextmanager
async def open_proxy(host: str, port: int) -> AsyncIterator[TcpProxy]:
    """Run a `TcpProxy` to ``host:port`` for the duration of the block."""
    async with _serve_proxy((host, port)) as proxy:
        yield proxy


@contextlib.asynccontextmanager
async def open_database_proxy(database_url: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    """Run a `TcpProxy` to the PostgreSQL server of ``database_url`` (over TCP, or its
    Unix socket as the embedded server gives it); yield it and the URL through it."""
    target = make_url(database_url)
    port = target.port or 5432
    upstream: tuple[str, int] | str
    if target.host:
        upstream = (target.host, port)
    else:
        directory = target.query["host"]
        if not isinstance(directory, str):
            directory = directory[0]
        upstream = f"{directory}/.s.PGSQL.{port}"
    async with _serve_proxy(upstream) as proxy:
        query = {key: value for key, value in target.query.items() if key != "host"}
        through = target.set(host=proxy.host, port=proxy.port, query=query)
        yield proxy, through.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def _serve_proxy(target: tuple[str, int] | str) -> AsyncIterator[TcpProxy]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    local_port = listener.extra(SocketAttribute.local_port)
    proxy = TcpProxy("127.0.0.1", local_port, target)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._serve)
        try:
            yield proxy
        finally:
            tg.cancel_scope.cancel()
