"""Crashes inside the real server: one chat session, and a supervisor giving up."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from actors.chat import SHUTTING_DOWN
from actors.fanout import LogFanout
from persistence import DatabaseSettings
from runtime import ActorDeadError, ActorSystem, MailboxFullError
from web import Settings
from web import _server as server_module
from web._server import RunningServer, open_server

from .conftest import make_world, open_master, open_sessionmaker, receive, wait_ready

UNEXPECTED = "Unexpected error occured. Try again later"


def tree_node(tree: dict[str, Any], path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = tree
    for name in path.split("."):
        children = node.get("children", []) if node is not None else []
        node = next((c for c in children if c["name"] == name), None)
    return node


class TestChatCrash:
    async def test_only_the_crashed_session_is_affected_and_it_can_send_again(
        self, server_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        crashing, bystander = uuid.uuid4(), uuid.uuid4()
        crashes: list[str] = []
        invoke = server_module._MeasuredMaster.invoke_master

        async def crash_once(
            self: Any, payload: Mapping[str, Any], *, session_id: str, **kwargs: Any
        ) -> Any:
            if session_id == str(crashing) and not crashes:
                crashes.append(session_id)
                raise RuntimeError("an edge failing in a way nobody planned for")
            return await invoke(self, payload, session_id=session_id, **kwargs)

        monkeypatch.setattr(server_module._MeasuredMaster, "invoke_master", crash_once)
        db = DatabaseSettings(DATABASE_URL=database_url)
        async with (
            open_server(server_settings, db) as server,
            open_sessionmaker(database_url) as sessionmaker,
            open_master(server.router_url, server_settings.MASTER_AGENT_API_KEY) as master,
        ):
            master.release("*")
            host, port = server.http_addresses[0]
            base = f"http://{host}:{port}"
            world = await make_world(base, server_settings, sessionmaker)
            async with (
                connect(world.ws_url(crashing)) as ws_crash,
                connect(world.ws_url(bystander)) as ws_other,
            ):
                await ws_crash.send(world.message("crash me"))
                await ws_other.send(world.message("hello"))
                failed = await receive(ws_crash)
                assert failed["response"]["response"] == {
                    "response": UNEXPECTED,
                    "agents_trace": [],
                    "is_success": False,
                }
                fine = await receive(ws_other)
                assert fine["response"]["response"]["response"] == f"answer for {bystander}"
                # The same socket sends again and is answered by the restarted actor.
                await ws_crash.send(world.message("again"))
                again = await receive(ws_crash)
                assert again["response"]["response"]["response"] == f"answer for {crashing}"
                async with httpx.AsyncClient(base_url=base) as http:
                    health = (await http.get("/health")).json()
                    ready = await http.get("/health/ready")
            assert ready.status_code == 200
            chat = tree_node(health["tree"], f"chats.{world.user_id}:{crashing}")
            assert chat is not None and chat["restarts"] == 1
            assert "RuntimeError" in str(chat.get("last_failure"))
            other = tree_node(health["tree"], f"chats.{world.user_id}:{bystander}")
            assert other is not None and other["restarts"] == 0
            assert SHUTTING_DOWN not in str(health)


@dataclass(frozen=True)
class _Bug:
    """A message the fan-out crashes on: a bug, which restart intensity is for."""


def _crash_on_bugs(monkeypatch: pytest.MonkeyPatch) -> None:
    handle = LogFanout.handle

    async def crashing(self: LogFanout, message: Any) -> Any:
        if isinstance(message, _Bug):
            raise RuntimeError("a bug that a restart does not fix")
        return await handle(self, message)

    monkeypatch.setattr(LogFanout, "handle", crashing)


async def _crash_past_the_root(system: ActorSystem) -> None:
    """Crash a root child until the root is past its intensity (3 restarts in 5 s)."""
    with anyio.fail_after(60):
        while not system.failed:
            with contextlib.suppress(ActorDeadError, MailboxFullError):
                system.ref_of("fanout").tell_nowait(_Bug())
            await anyio.sleep(0.05)


class TestEscalation:
    async def test_past_the_roots_intensity_liveness_and_readiness_fail(
        self, server_settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        _crash_on_bugs(monkeypatch)
        db = DatabaseSettings(DATABASE_URL=database_url)
        async with open_server(server_settings, db) as server:
            host, port = server.http_addresses[0]
            base = f"http://{host}:{port}"
            await wait_ready(base)
            async with httpx.AsyncClient(base_url=base) as http:
                assert (await http.get("/health/live")).json() == {
                    "alive": True,
                    "reason": "alive",
                }
                await _crash_past_the_root(server.system)
                health = (await http.get("/health")).json()
                live = await http.get("/health/live")
                ready = await http.get("/health/ready")
        assert health["status"] == "failed"
        assert health["tree"]["over_intensity"] is True
        fanout = tree_node(health["tree"], "fanout")
        assert fanout is not None and fanout["state"] == "failed"
        # Nothing inside the process repairs this: the process manager must restart it.
        assert live.status_code == 503
        assert live.json() == {
            "alive": False,
            "reason": "a supervisor exceeded its restart intensity",
        }
        assert ready.status_code == 503
        assert ready.json() == {
            "ready": False,
            "reason": "a supervisor exceeded its restart intensity",
        }

    async def test_serve_drains_and_exits_non_zero_when_the_tree_fails(
        self,
        server_settings: Settings,
        database_url: str,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.INFO, logger="web.server")
        _crash_on_bugs(monkeypatch)
        started: list[RunningServer] = []
        opened = anyio.Event()
        open_real = server_module.open_server

        @contextlib.asynccontextmanager
        async def recording(*args: Any, **kwargs: Any) -> AsyncIterator[RunningServer]:
            async with open_real(*args, **kwargs) as server:
                started.append(server)
                opened.set()
                yield server

        monkeypatch.setattr(server_module, "open_server", recording)
        db = DatabaseSettings(DATABASE_URL=database_url)
        code: list[int] = []

        async def run() -> None:
            code.append(await server_module.serve(server_settings, db, migrate=False))

        with anyio.fail_after(90):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await opened.wait()
                await _crash_past_the_root(started[0].system)
        assert code == [server_module.EXIT_TREE_FAILED]
        assert "past its restart intensity" in caplog.text
        assert "chat turns drained" in caplog.text
