"""Fixtures for the router tests: a router on an ephemeral port, a test client that
plays the back-end (``master_server_be``), agent JWTs, and real ``genai-protocol``
agents (2.0.3 in this environment, 1.0.9 from a cached venv under ``.test-cache/``)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import jwt
import pytest
from anyio.abc import Process
from websockets.asyncio.client import ClientConnection, connect

from actors.router import MASTER_SERVER_BE, open_router
from actors.router._identity import DEFAULT_MASTER_BE_API_KEY

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from actors.router import RunningRouter

ROOT = Path(__file__).resolve().parents[3]
AGENT_SCRIPT = Path(__file__).with_name("agent_script.py")
SECRET = "router-test-secret-of-at-least-32-bytes"
BACKEND_KEY = DEFAULT_MASTER_BE_API_KEY


def mint_jwt(agent_id: str, user_id: str | None = None) -> str:
    """Mint an agent JWT as the back-end issues it (spec API.md §3.4)."""
    claims = {"sub": agent_id, "exp": 253402300799, "user_id": user_id or str(uuid.uuid4())}
    return jwt.encode(claims, SECRET, algorithm="HS256")


class Peer:
    """A raw WebSocket client of the router, reading JSON frames with deadlines."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.skipped: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def next(self, within: float = 5.0) -> dict[str, Any]:
        with anyio.fail_after(within):
            frame: dict[str, Any] = json.loads(await self.ws.recv())
        return frame

    async def expect(self, message_type: str, within: float = 5.0, **match: Any) -> dict[str, Any]:
        """Return the ``request_payload`` of the next forward of ``message_type`` whose
        fields equal ``match`` (looking first at frames skipped earlier); other frames
        are kept in ``skipped``."""

        def matches(frame: dict[str, Any]) -> bool:
            payload = frame.get("request_payload", {})
            return payload.get("message_type") == message_type and all(
                payload.get(k) == v for k, v in match.items()
            )

        for frame in self.skipped:
            if matches(frame):
                self.skipped.remove(frame)
                return dict(frame["request_payload"])
        with anyio.fail_after(within):
            while True:
                frame = await self.next(within)
                if matches(frame):
                    return dict(frame["request_payload"])
                self.skipped.append(frame)

    async def drain(self, seconds: float) -> list[dict[str, Any]]:
        """Keep reading for ``seconds``; add what arrives to ``skipped`` and return it."""
        frames: list[dict[str, Any]] = []
        with anyio.move_on_after(seconds):
            while True:
                frames.append(await self.next(seconds))
        self.skipped += frames
        return frames

    async def assert_silent(self, seconds: float = 0.2) -> None:
        with anyio.move_on_after(seconds):
            frame = await self.ws.recv()
            raise AssertionError(f"unexpected frame {frame!r}")


@contextlib.asynccontextmanager
async def open_peer(url: str, **headers: str) -> AsyncIterator[Peer]:
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        yield Peer(ws)


@pytest.fixture(name="router")
async def _router() -> AsyncIterator[RunningRouter]:
    async with open_router("127.0.0.1", 0) as router:
        yield router


@pytest.fixture(name="backend")
async def _backend(router: RunningRouter) -> AsyncIterator[Peer]:
    async with open_peer(router.url, **{"API-KEY": BACKEND_KEY}) as peer:
        with anyio.fail_after(2):
            # The table has no change notification; poll it.
            while router.hub.switchboard.table.conn_id_of(MASTER_SERVER_BE) is None:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        yield peer


@pytest.fixture(scope="session", name="python_109")
def _python_109() -> Path:
    """The interpreter of a venv with ``genai-protocol==1.0.9``, created once and
    cached under ``.test-cache/`` (a file lock serialises concurrent test runs)."""
    cache = ROOT / ".test-cache"
    venv = cache / "gp109"
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    cache.mkdir(exist_ok=True)
    with (cache / "gp109.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            shutil.rmtree(venv, ignore_errors=True)
            uv = os.environ.get("UV") or shutil.which("uv")
            if uv:
                subprocess.run([uv, "venv", "-q", "--python", sys.executable, venv], check=True)
                install: list[str | Path] = [uv, "pip", "install", "-q", "--python", python]
            else:
                subprocess.run([sys.executable, "-m", "venv", venv], check=True)
                install = [python, "-m", "pip", "install", "-q"]
            subprocess.run([*install, "genai-protocol==1.0.9"], check=True)
            ready.write_text("genai-protocol==1.0.9\n")
    return python


class Agents:
    """Start real agents as subprocesses; every one is killed at teardown."""

    def __init__(self, router: RunningRouter) -> None:
        self.router = router
        self.processes: list[Process] = []

    async def start(
        self, python: Path | str, role: str, agent_id: str, target: str = ""
    ) -> Process:
        args = [str(python), str(AGENT_SCRIPT), role, self.router.url, mint_jwt(agent_id)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
        process = await anyio.open_process(
            [*args, target] if target else args,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)
        return process

    async def aclose(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()


@pytest.fixture(name="agents")
async def _agents(router: RunningRouter) -> AsyncIterator[Agents]:
    agents = Agents(router)
    try:
        yield agents
    finally:
        with anyio.CancelScope(shield=True):
            await agents.aclose()


@pytest.fixture(name="python_203")
def _python_203() -> Iterator[str]:
    yield sys.executable
