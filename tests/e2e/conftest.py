"""End-to-end fixtures: the whole server from `open_server` on free ports, against the
test database, driven only from outside (REST, the front-end socket, real agents).

Fixtures:
    settings: development ``Settings`` on free ports, with cheap bcrypt.
    backend: a running server (:class:`Backend`) with an HTTP client and helpers to
        register users, models and agents the way a front-end would.
    processes: subprocesses (agents, the master) killed at teardown.

The master agent is ``master_script.py`` on ``genai-protocol`` 1.0.9, as upstream runs it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from actors.router import MASTER_SERVER_BE, MASTER_SERVER_ML, GetStatistics, RouterHub
from persistence import DatabaseSettings
from web import Settings
from web._server import open_server

from ..actors.agents import free_port, start_agent, stop_processes
from ..actors.router.conftest import _python_109 as _python_109

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import Process

    from actors.router import RoutingTable, TableStatistics
    from web._server import RunningServer

__all__ = ["_python_109"]

MASTER_SCRIPT = Path(__file__).with_name("master_script.py")
PASSWORD = "Secret#123"
_names = itertools.count()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="settings")
def _settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": free_port(),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": free_port(),
        "FILES_DIR": tmp_path / "files",
        "BCRYPT_ROUNDS": 4,
        "SHUTDOWN_GRACE_SECONDS": 0.5,
        "MASTER_AGENT_TIMEOUT": 10.0,
        # These tests connect their own master (master_script.py) or expect none.
        "MASTER_AGENT": "external",
    }
    return Settings(**{**values, **overrides})


@dataclass(frozen=True)
class User:
    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True)
class RegisteredAgent:
    id: str
    jwt: str


class Backend:
    """A running server seen from outside, plus a peek at its router for timing."""

    def __init__(self, server: RunningServer, settings: Settings, http: httpx.AsyncClient):
        self.server = server
        self.settings = settings
        self.http = http
        host, port = server.http_addresses[0]
        self.base = f"http://{host}:{port}"

    @property
    def router_url(self) -> str:
        return self.server.router_url

    @property
    def api_url(self) -> str:
        return f"{self.base}/api"

    async def user(self) -> User:
        """Register a fresh user over the API and log it in."""
        name = f"e2e{next(_names)}{uuid.uuid4().hex[:6]}"
        response = await self.http.post(
            "/api/register", json={"username": name, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        user_id = response.json()["id"]
        response = await self.http.post(
            "/api/login/access-token", data={"username": name, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        return User(user_id, response.json()["access_token"])

    async def add_model(self, user: User, *, provider: str = "openai", name: str = "gpt") -> None:
        """Create a provider and a model config, as the UI's settings page does."""
        response = await self.http.post(
            "/api/llm/model/provider",
            json={"name": provider, "api_key": "sk-test"},
            headers=user.headers,
        )
        assert response.status_code == 200, response.text
        response = await self.http.post(
            "/api/llm/model/config",
            json={"name": name, "model": "gpt-4o-mini", "provider": provider},
            headers=user.headers,
        )
        assert response.status_code == 200, response.text

    async def agent(self, user: User, name: str = "echo agent") -> RegisteredAgent:
        """Register an agent over the API; return its id and token."""
        response = await self.http.post(
            "/api/agents/register",
            json={"name": name, "description": "echoes", "input_parameters": {}},
            headers=user.headers,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        return RegisteredAgent(body["id"], body["jwt"])

    async def active_ids(self, user: User) -> set[str]:
        response = await self.http.get(
            "/api/agents/active", params={"agent_type": "all"}, headers=user.headers
        )
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["active_connections"]}

    async def history(self, user: User, session_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            "/api/chat", params={"session_id": session_id}, headers=user.headers
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def table(self) -> RoutingTable:
        hub = self.server.system.ref_of("router.hub")._cell.instance
        table: RoutingTable = hub.switchboard.table
        return table

    async def table_stats(self) -> TableStatistics:
        stats: TableStatistics = await self.server.system.ref_of("router.hub").ask(GetStatistics())
        return stats

    async def cut_session(self) -> None:
        """Cut the back-end's own connection from the router's side.

        The session reaches the embedded router in-process; the router cuts such a link
        as it cuts a socket whose outbox is full.
        """
        hub = self.server.system.ref_of("router.hub")._cell.instance
        assert isinstance(hub, RouterHub)
        conn_id = hub.switchboard.table.conn_id_of(MASTER_SERVER_BE)
        assert conn_id is not None
        hub.switchboard._outboxes[conn_id].overflow()

    async def wait_connected(self, client_id: str, within: float = 15.0) -> None:
        """Wait until the embedded router has a connection for ``client_id``."""
        with anyio.fail_after(within):
            # The routing table has no change notification; poll it.
            while self.table().conn_id_of(client_id) is None:  # noqa: ASYNC110
                await anyio.sleep(0.005)

    async def wait_session(self, within: float = 15.0) -> None:
        await self.wait_connected(MASTER_SERVER_BE, within)

    async def start_master(self, python: Path, processes: list[Process]) -> Process:
        """Run the scripted 1.0.9 master agent and wait until the router has it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
        process = await anyio.open_process(
            [
                str(python),
                str(MASTER_SCRIPT),
                self.router_url,
                self.settings.MASTER_AGENT_API_KEY,
                self.api_url,
                self.settings.MASTER_BE_API_KEY,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        processes.append(process)
        await self.wait_connected(MASTER_SERVER_ML)
        return process

    async def start_agent(
        self, python: Path | str, agent: RegisteredAgent, processes: list[Process]
    ) -> Process:
        """Run a real echo agent; return once the router has its registration."""
        process = await start_agent(python, "echo", self.router_url, agent.jwt, processes)
        with anyio.fail_after(15):
            while not self.is_registered(agent.id):  # noqa: ASYNC110
                await anyio.sleep(0.002)
        return process

    async def launch_agent(
        self, python: Path | str, agent: RegisteredAgent, processes: list[Process]
    ) -> Process:
        """Run a real echo agent without waiting for it: one the back-end refuses may be
        registered and gone again before any poll of the table could see it."""
        return await start_agent(python, "echo", self.router_url, agent.jwt, processes)

    def is_registered(self, client_id: str) -> bool:
        table = self.table()
        conn_id = table.conn_id_of(client_id)
        if conn_id is None:
            return False
        return table._connections[conn_id].registration is not None

    @contextlib.asynccontextmanager
    async def frontend(
        self, user: User, session_id: str | None = None, *, events: bool = False
    ) -> AsyncIterator[Frontend]:
        host, port = self.server.http_addresses[0]
        url = f"ws://{host}:{port}/frontend/ws?token={user.token}"
        if session_id is not None:
            url += f"&session_id={session_id}"
        if events:
            url += "&events=1"
        async with connect(url) as ws:
            yield Frontend(ws)


class Frontend:
    """The UI's socket: send messages, read JSON frames with deadlines."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.logs: list[dict[str, Any]] = []

    async def say(self, message: str, *, llm_name: str = "gpt", provider: str = "openai") -> None:
        await self.ws.send(
            json.dumps({"message": message, "llm_name": llm_name, "provider": provider})
        )

    async def next(self, within: float = 10.0) -> dict[str, Any]:
        with anyio.fail_after(within):
            frame: dict[str, Any] = json.loads(await self.ws.recv())
        return frame

    async def response(self, within: float = 10.0) -> dict[str, Any]:
        """Return the next ``agent_response`` frame; ``agent_log`` frames go to ``logs``."""
        with anyio.fail_after(within):
            while True:
                frame = await self.next(within)
                if frame.get("type") == "agent_log":
                    self.logs.append(frame)
                    continue
                return frame

    async def wait_logs(self, done: Any, within: float = 10.0) -> None:
        """Read ``agent_log`` frames until ``done(self.logs)`` holds."""
        with anyio.fail_after(within):
            while not done(self.logs):
                frame = await self.next(within)
                assert frame.get("type") == "agent_log", frame
                self.logs.append(frame)

    async def silent_for(self, seconds: float) -> list[dict[str, Any]]:
        """Return every frame that arrives within ``seconds``."""
        frames: list[dict[str, Any]] = []
        with anyio.move_on_after(seconds):
            while True:
                frames.append(json.loads(await self.ws.recv()))
        return frames


@contextlib.asynccontextmanager
async def open_backend(settings: Settings, database_url: str) -> AsyncIterator[Backend]:
    async with open_server(settings, DatabaseSettings(DATABASE_URL=database_url)) as server:
        host, port = server.http_addresses[0]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as http:
            yield Backend(server, settings, http)


@pytest.fixture(name="backend")
async def _backend(settings: Settings, database_url: str) -> AsyncIterator[Backend]:
    async with open_backend(settings, database_url) as backend:
        await backend.wait_session()
        yield backend


@pytest.fixture(name="processes")
async def _processes() -> AsyncIterator[list[Process]]:
    processes: list[Process] = []
    try:
        yield processes
    finally:
        await stop_processes(processes)
