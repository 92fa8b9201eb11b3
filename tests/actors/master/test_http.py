"""The provider clients' network streams, over real loopback sockets; asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import SocketStream

from actors.master._http import _Backend


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend


class Peer:
    """The server side of one connection: what it received, and its stream."""

    def __init__(self) -> None:
        self.received = b""
        self.stream: SocketStream | None = None
        self.arrived = anyio.Event()


@pytest.fixture(name="peer")
async def _peer() -> AsyncIterator[tuple[Peer, int]]:
    peer = Peer()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: SocketStream) -> None:
        peer.stream = stream
        async with stream:
            try:
                while True:
                    peer.received += await stream.receive()
                    peer.arrived.set()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield peer, port
        tg.cancel_scope.cancel()
    await listener.aclose()


async def test_a_request_is_written_once_the_client_reads(peer: tuple[Peer, int]) -> None:
    server, port = peer
    stream = await _Backend().connect_tcp("127.0.0.1", port)
    try:
        await stream.write(b"GET / HTTP/1.1\r\n")
        await stream.write(b"Host: x\r\n\r\n")
        # Nothing is sent while the request is being written…
        with anyio.move_on_after(0.3):
            await server.arrived.wait()
        assert server.received == b""
        # …and all of it at once when the client turns to read the response.
        async with anyio.create_task_group() as tg:
            tg.start_soon(stream.read, 100)
            with anyio.fail_after(10):
                await server.arrived.wait()
                while server.received != b"GET / HTTP/1.1\r\nHost: x\r\n\r\n":  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert server.stream is not None
            await server.stream.send(b"ok")
    finally:
        await stream.aclose()


async def test_an_idle_socket_turns_readable_when_the_server_closes(
    peer: tuple[Peer, int],
) -> None:
    server, port = peer
    stream = await _Backend().connect_tcp("127.0.0.1", port)
    try:
        assert stream.get_extra_info("socket") is not None
        with anyio.fail_after(10):
            while server.stream is None:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert stream.get_extra_info("is_readable") is False
        await server.stream.aclose()
        with anyio.fail_after(10):
            while not stream.get_extra_info("is_readable"):  # noqa: ASYNC110
                await anyio.sleep(0.01)
        # The other attributes are the inner stream's.
        assert stream.get_extra_info("server_addr")[1] == port
    finally:
        await stream.aclose()
