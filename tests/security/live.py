"""A real server in the test process, for what only a real socket shows.

``open_live(tmp_path, database_url, **settings)`` runs ``open_server`` on free ports and
yields a :class:`Live` with its URLs and helpers to log a user in and open sockets.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from persistence import DatabaseSettings
from web import Settings
from web._server import RunningServer, open_server

from ..web.test_server import free_port

PASSWORD = "Secret#123"


@dataclass(frozen=True)
class Live:
    server: RunningServer
    settings: Settings
    http_url: str

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://", 1)

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url)

    async def login(self) -> tuple[str, str]:
        """Register a fresh user and return ``(user id, token)``."""
        username = f"live_{uuid.uuid4().hex[:10]}"
        async with self.http() as http:
            registered = await http.post(
                "/api/register", json={"username": username, "password": PASSWORD}
            )
            assert registered.status_code == 200, registered.text
            login = await http.post(
                "/api/login/access-token", data={"username": username, "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
        return str(registered.json()["id"]), str(login.json()["access_token"])

    def chat(self, token: str, session_id: str | None = None, **options: Any) -> connect:
        """Open ``/frontend/ws`` as the token's user (``async with``)."""
        query = f"?token={token}" + (f"&session_id={session_id}" if session_id else "")
        return connect(f"{self.ws_url}/frontend/ws{query}", open_timeout=10, **options)

    def router(self, headers: dict[str, str], **options: Any) -> connect:
        """Open the router's ``/ws`` with the given handshake headers (``async with``)."""
        return connect(
            self.server.router_url, additional_headers=headers, open_timeout=10, **options
        )


@contextlib.asynccontextmanager
async def open_live(tmp_path: Path, database_url: str, **overrides: Any) -> AsyncIterator[Live]:
    """Run the whole server on free loopback ports for the duration of the block."""
    fields: dict[str, Any] = {
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": free_port(),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": free_port(),
        "FILES_DIR": tmp_path / "files",
        "BCRYPT_ROUNDS": 4,
        "SHUTDOWN_GRACE_SECONDS": 1,
        **overrides,
    }
    settings = Settings(**fields)
    async with open_server(settings, DatabaseSettings(DATABASE_URL=database_url)) as server:
        host, port = server.http_addresses[0]
        yield Live(server, settings, f"http://{host}:{port}")


__all__ = ["PASSWORD", "Live", "open_live"]
