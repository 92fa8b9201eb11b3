"""Fault tests: the real server (``open_server`` or the ``genai-backend serve`` process)
against a real PostgreSQL, a scripted master agent on its router and raw WebSocket
clients for the front-end and the agents.

Helpers:
    server_settings: settings on free ports with short grace and restart backoff.
    proxied_server: the whole server on the run's database reached through a
        `TcpProxy` (``tests/faults/proxy.py``) that the test cuts and restores, with a
        user made through its API (`ProxiedServer`).
    ScriptedMaster: answers the master invocations it is allowed to (per session).
    World: a user with a token and a model config, made through the server's own API.
"""

from __future__ import annotations

import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from persistence import (
    AgentRepository,
    ConfigRepository,
    DatabaseSettings,
    ProviderRepository,
    create_engine,
    create_sessionmaker,
)
from web import Settings
from web._server import RunningServer, open_server

from .proxy import TcpProxy, open_database_proxy

PASSWORD = "Secret#123"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(name="server_settings")
def _server_settings(tmp_path: Path) -> Settings:
    return Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=free_port(),
        ROUTER_HOST="127.0.0.1",
        ROUTER_PORT=free_port(),
        FILES_DIR=tmp_path / "files",
        BCRYPT_ROUNDS=4,
        SHUTDOWN_GRACE_SECONDS=2,
        MASTER_AGENT_TIMEOUT=30,
    )


@contextlib.asynccontextmanager
async def open_sessionmaker(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(url, pool_size=2, max_overflow=2)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


async def receive(ws: ClientConnection, within: float = 10.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def wait_ready(base_url: str, *, status: int = 200, within: float = 30.0) -> dict[str, Any]:
    """Poll ``/health/ready`` until it answers ``status``; return its body."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        with anyio.fail_after(within):
            while True:
                try:
                    response = await http.get("/health/ready")
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code == status:
                    body: dict[str, Any] = response.json()
                    return body
                await anyio.sleep(0.05)


@dataclass
class World:
    """A user of the server, with a model config to chat with."""

    base_url: str
    user_id: uuid.UUID
    token: str

    def ws_url(self, session_id: uuid.UUID | None = None) -> str:
        ws = self.base_url.replace("http://", "ws://")
        query = f"?token={self.token}"
        if session_id is not None:
            query += f"&session_id={session_id}"
        return f"{ws}/frontend/ws{query}"

    @staticmethod
    def message(text: str) -> str:
        return json.dumps({"message": text, "llm_name": "gpt", "provider": "openai"})

    async def add_agent(self, sessionmaker: async_sessionmaker[AsyncSession], secret: str) -> str:
        """Register an agent owned by this user in the database; return its JWT."""
        agent_id = uuid.uuid4()
        claims = {"sub": str(agent_id), "exp": 253402300799, "user_id": str(self.user_id)}
        token = jwt.encode(claims, secret, algorithm="HS256")
        async with sessionmaker.begin() as db:
            await AgentRepository(db).add(
                id=agent_id,
                name=f"agent_{agent_id.hex[:8]}",
                alias=f"agent_{agent_id.hex[:8]}",
                description="floods logs",
                jwt=token,
                creator_id=self.user_id,
                input_parameters={},
            )
        return token


async def make_world(
    base_url: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> World:
    """Register and log in a fresh user over HTTP; give it provider ``openai``, config ``gpt``."""
    username = f"user_{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=base_url) as http:
        registered = await http.post(
            "/api/register", json={"username": username, "password": PASSWORD}
        )
        assert registered.status_code == 200, registered.text
        login = await http.post(
            "/api/login/access-token", data={"username": username, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
    user_id = uuid.UUID(registered.json()["id"])
    async with sessionmaker.begin() as db:
        provider = await ProviderRepository(db).add(
            creator_id=user_id,
            name="openai",
            api_key=settings.api_key_cipher().encrypt("sk-test"),
            provider_metadata={},
        )
        await ConfigRepository(db).add(
            creator_id=user_id, provider_id=provider.id, name="gpt", model="m", system_prompt="s"
        )
    return World(base_url, user_id, login.json()["access_token"])


@dataclass
class ScriptedMaster:
    """The master agent on the router: answers an invocation once its session is released.

    ``released`` holds the session ids answered at once; `release` adds one later.
    ``seen`` maps each session id to the invocations received for it.
    """

    ws: ClientConnection
    released: set[str] = field(default_factory=set)
    seen: dict[str, int] = field(default_factory=dict)
    answered: int = 0
    _changed: anyio.Event = field(default_factory=anyio.Event)
    _waiting: list[dict[str, Any]] = field(default_factory=list)

    def release(self, session_id: uuid.UUID | str) -> None:
        self.released.add(str(session_id))
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_seen(self, session_id: uuid.UUID | str, count: int = 1) -> None:
        with anyio.fail_after(10):
            while self.seen.get(str(session_id), 0) < count:
                await self._changed.wait()

    async def run(self) -> None:
        # The server going away ends the script; that is what a stop test expects.
        try:
            await self._run()
        except* ConnectionClosed:
            pass

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._answer_released)
            async for raw in self.ws:
                frame = json.loads(raw)
                if "invoked_by" not in frame:
                    continue
                session_id = frame.get("request_metadata", {}).get("session_id", "")
                self.seen[session_id] = self.seen.get(session_id, 0) + 1
                self._waiting.append(frame)
                self._notify()
            tg.cancel_scope.cancel()

    async def _answer_released(self) -> None:
        while True:
            changed = self._changed
            for frame in list(self._waiting):
                session_id = frame.get("request_metadata", {}).get("session_id", "")
                if session_id in self.released or "*" in self.released:
                    self._waiting.remove(frame)
                    await self.ws.send(
                        json.dumps(
                            {
                                "response": {
                                    "agents_trace": [],
                                    "response": f"answer for {session_id}",
                                    "is_success": True,
                                },
                                "message_type": "agent_response",
                                "execution_time": 0.1,
                                "invoked_by": frame["invoked_by"],
                            }
                        )
                    )
                    self.answered += 1
            await changed.wait()


@contextlib.asynccontextmanager
async def open_master(router_url: str, api_key: str) -> AsyncIterator[ScriptedMaster]:
    async with (
        connect(router_url, additional_headers={"API-KEY": api_key}, max_size=None) as ws,
        anyio.create_task_group() as tg,
    ):
        master = ScriptedMaster(ws)
        tg.start_soon(master.run)
        yield master
        tg.cancel_scope.cancel()


@dataclass
class ProxiedServer:
    """The whole server, whose every database connection goes through ``proxy``.

    Attributes:
        server: The running server (its tree, router URL, addresses).
        proxy: Cut it to make the database unreachable for the server only.
        settings: The server's settings (JWT key, master agent key, ...).
        base_url: Its HTTP face.
        sessionmaker: Straight to the database (not through the proxy), for the test's
            own reads and set-up.
        world: A user made through the server's API, with a model config to chat with
            (`World.ws_url`, and `open_master` on ``server.router_url``, give a chat
            client and a master in the same scenario).
    """

    server: RunningServer
    proxy: TcpProxy
    settings: Settings
    base_url: str
    sessionmaker: async_sessionmaker[AsyncSession]
    world: World


@pytest.fixture(name="proxied_server")
async def _proxied_server(
    server_settings: Settings, database_url: str
) -> AsyncIterator[ProxiedServer]:
    async with (
        open_database_proxy(database_url) as (proxy, url),
        open_server(server_settings, DatabaseSettings(DATABASE_URL=url)) as server,
        open_sessionmaker(database_url) as sessionmaker,
    ):
        host, port = server.http_addresses[0]
        base_url = f"http://{host}:{port}"
        await wait_ready(base_url)
        world = await make_world(base_url, server_settings, sessionmaker)
        yield ProxiedServer(server, proxy, server_settings, base_url, sessionmaker, world)
