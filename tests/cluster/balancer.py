"""A round-robin TCP balancer for tests: each new connection goes to the next target.

``open_balancer(targets)`` listens on a free loopback port; connection ``n`` is
forwarded to ``targets[n % len(targets)]``, skipping a target that refuses it (a dead
process), as a load balancer's health check would. `Balancer.sent` counts connections
per target.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from anyio.abc import ByteReceiveStream, ByteSendStream, SocketStream

__all__ = ["Balancer", "open_balancer"]


class Balancer:
    """Round-robin forwarding; see `open_balancer`."""

    def __init__(self, port: int, targets: Sequence[tuple[str, int]]) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.targets = list(targets)
        self.sent = [0] * len(self.targets)
        self._next = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(self, client: SocketStream) -> None:
        async with client:
            upstream = await self._connect()
            if upstream is None:
                return
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(_pipe, client, upstream, tg.cancel_scope)
                tg.start_soon(_pipe, upstream, client, tg.cancel_scope)

    async def _connect(self) -> SocketStream | None:
        for _ in range(len(self.targets)):
            index = self._next % len(self.targets)
            self._next += 1
            host, port = self.targets[index]
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                continue  # that process is gone: the next one takes it
            self.sent[index] += 1
            return stream
        return None


async def _pipe(source: ByteReceiveStream, sink: ByteSendStream, scope: anyio.CancelScope) -> None:
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        while True:
            await sink.send(await source.receive())
    scope.cancel()


@contextlib.asynccontextmanager
async def open_balancer(targets: Sequence[tuple[str, int]]) -> AsyncIterator[Balancer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    balancer = Balancer(port, targets)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, balancer.serve)
        yield balancer
        tg.cancel_scope.cancel()
