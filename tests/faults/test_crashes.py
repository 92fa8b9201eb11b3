"""Crashes inside the real server: one chat session, and a supervisor giving up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from actors.chat import SHUTTING_DOWN
from persistence import DatabaseSettings
from runtime import RestartIntensity
from web import Settings
from web import _server as server_module
from web._server import open_server

from .conftest import free_port, make_world, open_master, open_sessionmaker, receive, wait_ready

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


async def _slam(connection: ServerConnection) -> None:
    await connection.close(1011, "not today")


@pytest.fixture(name="slamming_router")
async def _slamming_router() -> AsyncIterator[str]:
    """A 'router' that accepts each WebSocket and closes it at once."""
    port = free_port()
    async with serve(_slam, "127.0.0.1", port):
        yield f"ws://127.0.0.1:{port}/ws"


class TestEscalation:
    async def test_a_supervisor_over_its_intensity_fails_the_root_and_readiness(
        self,
        server_settings: Settings,
        database_url: str,
        slamming_router: str,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(server_module, "_ROUTER_INTENSITY", RestartIntensity(2, 60.0))
        server_settings.ROUTER_WS_URL = slamming_router
        db = DatabaseSettings(DATABASE_URL=database_url)
        async with open_server(server_settings, db) as server:
            host, port = server.http_addresses[0]
            base = f"http://{host}:{port}"
            body = await wait_ready(base, status=503, within=60)
            with anyio.fail_after(60):
                while not server.system.failed:
                    await anyio.sleep(0.1)
                    body = await wait_ready(base, status=503)
            assert body == {
                "ready": False,
                "reason": "a supervisor exceeded its restart intensity",
            }
            async with httpx.AsyncClient(base_url=base) as http:
                health = (await http.get("/health")).json()
                live = await http.get("/health/live")
        assert health["status"] == "failed"
        assert health["ready"] is False
        assert health["tree"]["over_intensity"] is True
        router = tree_node(health["tree"], "router")
        assert router is not None and router["restarts"] >= 1
        # The process keeps answering: liveness is not readiness.
        assert live.status_code == 200
