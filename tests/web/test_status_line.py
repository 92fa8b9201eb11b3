"""The HTTP face's status lines carry the standard reason phrase (``HTTP/1.1 401
Unauthorized``), which clients print in their errors; a bare ``401 `` reads as a fault.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from quart import Quart

from runtime import ChildSpec, open_actor_system
from web._http import GetAddresses, HttpServer, hypercorn_config

from .conftest import Users


@pytest.fixture(name="address")
async def _address(app: Quart) -> AsyncIterator[tuple[str, int]]:
    spec = ChildSpec("http", lambda: HttpServer(app, hypercorn_config("127.0.0.1", 0)))
    async with open_actor_system(spec) as system:
        [(host, port)] = await system.ref_of("http").ask(GetAddresses())
        yield host, port


async def status_line(address: tuple[str, int], request: bytes) -> bytes:
    """Send a raw request and return the first line of the answer."""
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(*address) as stream:
            await stream.send(request)
            received = b""
            while b"\r\n" not in received:
                chunk = await stream.receive()
                received += chunk
    return received.split(b"\r\n", 1)[0]


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode()


async def test_every_status_line_has_its_reason_phrase(address: tuple[str, int]) -> None:
    body = b"{}"
    register = (
        b"POST /api/register HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    cases = [
        (get("/openapi.json"), b"HTTP/1.1 200 OK"),
        (get("/"), b"HTTP/1.1 307 Temporary Redirect"),
        (get("/api/agents/"), b"HTTP/1.1 401 Unauthorized"),
        (get("/no/such/path"), b"HTTP/1.1 404 Not Found"),
        (register, b"HTTP/1.1 422 Unprocessable Entity"),
        # A request hypercorn refuses itself, before the app.
        (b"NOT HTTP\r\n\r\n", b"HTTP/1.1 400 Bad Request"),
    ]
    for request, expected in cases:
        assert await status_line(address, request) == expected


async def test_a_websocket_handshake_switches_protocols(
    address: tuple[str, int], users: Users
) -> None:
    user = await users.login()
    handshake = (
        f"GET /frontend/ws?token={user.token} HTTP/1.1\r\nHost: test\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert await status_line(address, handshake.encode()) == b"HTTP/1.1 101 Switching Protocols"
