"""A graceful stop of the real ``genai-backend serve`` process while chat turns run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from actors.chat import SHUTTING_DOWN
from persistence import ChatMessage as StoredMessage
from web import Settings
from web._server import DUPLICATE_SIGNAL_SECONDS, FORCED_EXIT_SECONDS

from .conftest import make_world, open_master, open_sessionmaker, receive, wait_ready


class ServeProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines() if line.startswith("{")]

    async def wait_exit(self, within: float) -> int:
        with anyio.fail_after(within):
            while self.proc.poll() is None:  # noqa: ASYNC110 - a child process has no event
                await anyio.sleep(0.05)
        return self.proc.returncode


@pytest.fixture(name="serve")
def _serve(server_settings: Settings, database_url: str, tmp_path: Path) -> Iterator[ServeProcess]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(server_settings.HTTP_PORT),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(server_settings.ROUTER_PORT),
        "FILES_DIR": str(tmp_path / "files"),
        "SHUTDOWN_GRACE_SECONDS": "2",
        "BCRYPT_ROUNDS": "4",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "web.cli", "serve"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield ServeProcess(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class TestGracefulStop:
    async def test_turns_in_flight_get_a_reply_or_an_error_and_nothing_is_lost(
        self, serve: ServeProcess, server_settings: Settings, database_url: str
    ) -> None:
        base = f"http://127.0.0.1:{server_settings.HTTP_PORT}"
        router = f"ws://127.0.0.1:{server_settings.ROUTER_PORT}/ws"
        await wait_ready(base, within=60)
        fast, slow = uuid.uuid4(), uuid.uuid4()
        async with (
            open_sessionmaker(database_url) as sessionmaker,
            open_master(router, server_settings.MASTER_AGENT_API_KEY) as master,
        ):
            world = await make_world(base, server_settings, sessionmaker)
            async with (
                connect(world.ws_url(fast)) as ws_fast,
                connect(world.ws_url(slow)) as ws_slow,
            ):
                await ws_fast.send(world.message("answered within the grace"))
                await ws_slow.send(world.message("still waiting at the deadline"))
                await master.wait_seen(fast)
                await master.wait_seen(slow)

                stopped_at = time.monotonic()
                serve.proc.send_signal(signal.SIGTERM)
                # Readiness turns at once, and new sockets are turned away.
                body = await wait_ready(base, status=503, within=1.0)
                assert body["reason"].startswith("draining")
                async with connect(world.ws_url()) as late:
                    with pytest.raises(ConnectionClosed) as refused:
                        await receive(late)
                assert refused.value.rcvd is not None
                assert refused.value.rcvd.code == 1013
                assert refused.value.rcvd.reason == "Server is shutting down"
                # A message on an open socket during the stop is refused with the one
                # frame the web UI waits for.
                await ws_fast.send(world.message("too late"))
                late = await receive(ws_fast)
                assert late["type"] == "agent_response"
                assert late["response"]["response"] == {
                    "response": SHUTTING_DOWN,
                    "agents_trace": [],
                    "is_success": False,
                }

                master.release(fast)
                answered = await receive(ws_fast)
                assert answered["type"] == "agent_response"
                assert answered["response"]["response"]["response"] == f"answer for {fast}"
                assert answered["response"]["response"]["is_success"] is True

                cut = await receive(ws_slow)
                waited = time.monotonic() - stopped_at
                assert cut["type"] == "agent_response"
                assert cut["response"]["response"]["is_success"] is False
                assert cut["response"]["response"]["response"] == SHUTTING_DOWN
                assert 1.5 < waited < 5, waited

                for ws in (ws_fast, ws_slow):
                    with pytest.raises(ConnectionClosed) as closed:
                        await receive(ws)
                    assert closed.value.rcvd is not None
                    assert closed.value.rcvd.code == 1001
            assert await serve.wait_exit(within=20) == 0

            # Both turns are stored whole: the user's message and the reply or error.
            async with sessionmaker() as db:
                rows = (
                    await db.execute(
                        select(StoredMessage).where(StoredMessage.conversation_id.in_([fast, slow]))
                    )
                ).scalars()
                stored = {(row.conversation_id, row.sender_type.value) for row in rows}
        assert stored == {
            (fast, "user"),
            (fast, "master_agent"),
            (slow, "user"),
            (slow, "master_agent"),
        }
        # Every log line of the cut turn names its session and request.
        entries = serve.json_lines()
        cut_lines = [e for e in entries if e["message"] == "turn cut short: the server is stopping"]
        assert [e["session_id"] for e in cut_lines] == [str(slow)]
        assert cut_lines[0]["request_id"] == cut["response"]["request_id"]
        assert any(e["message"] == "stopped" for e in entries)
        # Once ready, the startup heap was left out of the collector's full passes.
        frozen = [e for e in entries if e["message"].startswith("startup heap frozen: ")]
        assert len(frozen) == 1 and int(frozen[0]["message"].split()[3]) > 10_000, frozen

    async def test_a_second_signal_stops_at_once(
        self, serve: ServeProcess, server_settings: Settings, database_url: str
    ) -> None:
        base = f"http://127.0.0.1:{server_settings.HTTP_PORT}"
        router = f"ws://127.0.0.1:{server_settings.ROUTER_PORT}/ws"
        await wait_ready(base, within=60)
        session_id = uuid.uuid4()
        async with (
            open_sessionmaker(database_url) as sessionmaker,
            open_master(router, server_settings.MASTER_AGENT_API_KEY) as master,
        ):
            world = await make_world(base, server_settings, sessionmaker)
            async with connect(world.ws_url(session_id)) as ws:
                await ws.send(world.message("never answered"))
                await master.wait_seen(session_id)
                serve.proc.send_signal(signal.SIGTERM)
                await wait_ready(base, status=503, within=1.0)
                # Sooner, it would count as the same stop sent twice (a process group).
                await anyio.sleep(DUPLICATE_SIGNAL_SECONDS)
                started = time.monotonic()
                serve.proc.send_signal(signal.SIGINT)
                await serve.wait_exit(within=5)
                assert time.monotonic() - started < FORCED_EXIT_SECONDS + 1
        messages = [str(e["message"]) for e in serve.json_lines()]
        assert "SIGINT received again: stopping at once" in messages
