"""The HTTP transport under the provider clients: ``httpx2``'s own, on streams that
cost less per request.

The built-in master makes two model calls per turn or more, and the HTTP stack under
the ``openai`` client is most of its server CPU. Two costs there come from the network
stream, not from HTTP, and go with this stream:

- a request is written in one ``send`` (its head and body are kept until the response
  is read, which every HTTP/1.1 exchange does next), not one system call for each;
- the pool asks every idle connection at every request, and again as each response
  closes, whether its socket turned readable (the server closed it): the socket is
  looked up once per connection here, not through AnyIO's typed attributes each time.

Everything else (pooling, keep-alive, TLS, time-outs, errors) is ``httpcore2``'s.
"""

from __future__ import annotations

import select
import socket
from typing import TYPE_CHECKING, Any

import httpcore2
import httpx2

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

__all__ = ["ProviderTransport"]


def _readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has something to read (a closed one counts: its read ends)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore2.AsyncNetworkStream):
    """A stream that writes a request in one piece and knows its socket."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream, sock: socket.socket | None) -> None:
        self._inner = inner
        self._socket = sock
        self._pending: list[bytes] = []

    async def _flush(self, timeout: float | None) -> None:  # noqa: ASYNC109 - httpcore2's interface
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            await self._inner.write(data, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109 - httpcore2's interface
        # Kept until the response is read: an HTTP/1.1 client reads only once its
        # request is written, so nothing waits on these bytes meanwhile.
        if buffer:
            self._pending.append(buffer)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109 - httpcore2's interface
        await self._flush(timeout)
        return await self._inner.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending.clear()
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
    ) -> httpcore2.AsyncNetworkStream:
        await self._flush(timeout)
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _Stream(inner, self._socket)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            return _readable(self._socket)
        if info == "socket":
            return self._socket
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.AnyIOBackend):
    """AnyIO's network backend, its TCP streams wrapped in `_Stream`."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore2's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        stream = await super().connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, stream.get_extra_info("socket"))


class ProviderTransport(httpx2.AsyncHTTPTransport):
    """``httpx2``'s transport, its connection pool on `_Backend`'s streams.

    Args:
        limits: The pool's limits.
    """

    def __init__(self, *, limits: httpx2.Limits) -> None:
        super().__init__(limits=limits)
        # The pool the transport made, but for its network backend (which the
        # transport does not take): the same certificates, limits and keep-alive.
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_Backend(),
        )
