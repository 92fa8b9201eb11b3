from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import jwt as pyjwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from persistence import AgentRepository, UserRepository

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def test_help_lists_the_commands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "web.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "serve" in out
    assert "migrate" in out


def test_help_imports_neither_the_app_nor_the_database() -> None:
    # `genai-backend --help` must stay instant: the console script imports web.cli, and
    # the web package must not pull in Quart, SQLAlchemy or the actors on the way.
    probe = (
        "import sys\n"
        "from web.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}\n"
        "               & {'quart', 'sqlalchemy', 'actors', 'persistence', 'pydantic'})\n"
        "print('HEAVY', ','.join(heavy))\n"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    print(f"--help took {time.perf_counter() - started:.3f} s")
    assert out.splitlines()[-1] == "HEAVY ", out


def test_help_lists_the_router_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "web.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "router" in out


class RouterProcess:
    """``genai-backend router`` as a child process, its output in a file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path, url: str) -> None:
        self.proc = proc
        self.log = log
        self.url = url

    def text(self) -> str:
        return self.log.read_text()

    async def wait_ready(self, within: float = 30.0) -> None:
        with anyio.fail_after(within):
            # A child's output has no event to wait on; poll the file.
            while "Ready." not in self.text():
                assert self.proc.poll() is None, self.text()
                await anyio.sleep(0.05)

    async def stop(self, within: float = 10.0) -> int:
        """Send SIGTERM; return the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(within):
            while self.proc.poll() is None:  # noqa: ASYNC110 - a child process has no event
                await anyio.sleep(0.05)
        return self.proc.returncode


@contextlib.contextmanager
def router_process(
    tmp_path: Path, port: int, database_url: str | None = None, **env: str
) -> Iterator[RouterProcess]:
    """Start ``genai-backend router`` on ``127.0.0.1:port``; kill it at exit if still running."""
    values = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SQLALCHEMY_ASYNC_DATABASE_URI")
        and not k.startswith("POSTGRES_")
    }
    values |= {"ROUTER_HOST": "127.0.0.1", "ROUTER_PORT": str(port), **env}
    if database_url is not None:
        values["DATABASE_URL"] = database_url
    log = tmp_path / f"router-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "router"],
            env=values,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield RouterProcess(proc, log, f"ws://127.0.0.1:{port}/ws")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TestRouterCommand:
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.mark.anyio
    async def test_without_a_database_it_trusts_tokens_and_stops_on_sigterm(
        self, tmp_path: Path
    ) -> None:
        with router_process(tmp_path, free_port()) as router:
            await router.wait_ready()
            assert f"Agent router (standalone): {router.url}" in router.text()
            assert "their sub is trusted" in router.text()
            # A token nobody signed connects: its sub is its id, as upstream's router does.
            token = pyjwt.encode({"sub": str(uuid.uuid4())}, "anything-at-all-32-bytes-long!!!")
            async with connect(
                router.url, additional_headers={"X-Custom-Authorization": token}
            ) as agent:
                started = time.monotonic()
                assert await router.stop() == 0
                with pytest.raises(ConnectionClosed) as closed:
                    await agent.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
            print(f"stopped {time.monotonic() - started:.2f} s after SIGTERM")
            assert "SIGTERM received: stopping" in router.text()

    @pytest.mark.anyio
    async def test_with_a_database_it_checks_tokens_and_resets_agents_at_start_and_stop(
        self, tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        secret = "router-command-secret-of-32-bytes-at-least"
        agent_id = uuid.uuid4()
        async with sessionmaker.begin() as db:
            user_id = (await UserRepository(db).add(f"router-{uuid.uuid4().hex[:8]}", "x")).id
        token = pyjwt.encode(
            {"sub": str(agent_id), "exp": 253402300799, "user_id": str(user_id)}, secret
        )
        async with sessionmaker.begin() as db:
            await AgentRepository(db).add(
                id=agent_id,
                name="router_agent",
                alias=f"router_agent_{agent_id.hex[:6]}",
                description="",
                jwt=token,
                creator_id=user_id,
                input_parameters={},
            )
            # Listed as connected to a router that is gone.
            await AgentRepository(db).set_active(agent_id, True)
        with router_process(tmp_path, free_port(), database_url, JWT_SECRET_KEY=secret) as router:
            await router.wait_ready()
            assert "Agent tokens: checked against" in router.text()
            assert not await _is_active(sessionmaker, agent_id)  # reset before listening
            unknown = pyjwt.encode(
                {"sub": str(uuid.uuid4()), "exp": 253402300799, "user_id": str(user_id)}, secret
            )
            async with connect(
                router.url, additional_headers={"X-Custom-Authorization": unknown}
            ) as stranger:
                # The frame a library agent stops on, then the close.
                stop = json.loads(await stranger.recv())
                assert stop["error"]["error_message"] == "Agent ID was not registered before"
                with pytest.raises(ConnectionClosed) as refused:
                    await stranger.recv()
            assert refused.value.rcvd is not None and refused.value.rcvd.code == 4001
            async with connect(
                router.url, additional_headers={"X-Custom-Authorization": token}
            ) as agent:
                # Admitted: it stays open until the router stops.
                async with sessionmaker.begin() as db:
                    await AgentRepository(db).set_active(agent_id, True)
                assert await router.stop() == 0
                with pytest.raises(ConnectionClosed):
                    await agent.recv()
            assert not await _is_active(sessionmaker, agent_id)  # reset after stopping
            assert "marked 1 agents inactive after stopping" in router.text()

    def test_a_taken_port_is_a_one_line_refusal(self, tmp_path: Path) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            env = {**os.environ, "ROUTER_HOST": "127.0.0.1", "ROUTER_PORT": str(port)}
            env.pop("DATABASE_URL", None)
            done = subprocess.run(
                [sys.executable, "-m", "web.cli", "router"],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=30,
            )
        assert done.returncode == 1, done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("genai-backend: ")


async def _is_active(sessionmaker: async_sessionmaker[AsyncSession], agent_id: uuid.UUID) -> bool:
    async with sessionmaker() as db:
        agent = await AgentRepository(db).get_any_owner(agent_id)
        return bool(agent is not None and agent.is_active)
