"""The router session recovers on its own, spending no restarts: from a router that is
down at boot, and from its socket being cut mid-turn."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from actors.router import ApiKeys, open_router
from actors.session import ROUTER_UNAVAILABLE

from ..actors.agents import free_port
from .conftest import make_settings, open_backend
from .test_chat import assert_response_shape

if TYPE_CHECKING:
    from pathlib import Path

    from anyio.abc import Process

    from .conftest import Backend


def find(tree: dict[str, Any], name: str) -> dict[str, Any]:
    for child in tree.get("children", []):
        if child["name"] == name:
            return child
    raise KeyError(name)


async def readiness(backend: Backend) -> tuple[int, dict[str, Any]]:
    response = await backend.http.get("/health/ready")
    return response.status_code, response.json()


class TestRouterDownAtBoot:
    async def test_the_server_starts_not_ready_and_turns_ready_with_the_router(
        self, tmp_path: Path, database_url: str
    ) -> None:
        port = free_port()
        settings = make_settings(tmp_path, ROUTER_WS_URL=f"ws://127.0.0.1:{port}/ws")
        async with open_backend(settings, database_url) as backend:
            status, body = await readiness(backend)
            assert status == 503
            assert body["reason"].startswith("router session not connected")
            keys = ApiKeys(
                master_be=settings.MASTER_BE_API_KEY, master_agent=settings.MASTER_AGENT_API_KEY
            )
            async with open_router("127.0.0.1", port, keys=keys, ping_interval=None):
                with anyio.fail_after(5):
                    # Readiness has no change notification; poll it as an orchestrator does.
                    while (await readiness(backend))[0] != 200:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                health = (await backend.http.get("/health")).json()
                session = find(find(health["tree"], "router"), "session")
                # The router was waited for inside the session, not by crashing it.
                assert session["restarts"] == 0
                assert health["router"]["connected"] is True


class TestSessionCut:
    async def test_a_cut_session_fails_the_turn_reconnects_and_serves_the_next_one(
        self, backend: Backend, processes: list[Process], python_109: Path
    ) -> None:
        owner = await backend.user()
        await backend.add_model(owner)
        await backend.start_master(python_109, processes)
        session_id = str(uuid.uuid4())
        async with backend.frontend(owner, session_id) as ui:
            await ui.say("sleep 30")
            with anyio.fail_after(5):
                while (await backend.table_stats()).pending_invocations < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.01)

            await backend.cut_session()
            started = time.perf_counter()
            inner = assert_response_shape(await ui.response(within=5), session_id)
            assert time.perf_counter() - started < 2
            assert inner == {
                "response": ROUTER_UNAVAILABLE,
                "agents_trace": [],
                "is_success": False,
            }

            await backend.wait_session(within=5)
            health = (await backend.http.get("/health")).json()
            session = find(find(health["tree"], "router"), "session")
            assert session["restarts"] == 0
            assert session["last_failure"] is None
            with anyio.fail_after(5):
                while (await readiness(backend))[0] != 200:  # noqa: ASYNC110
                    await anyio.sleep(0.02)

            await ui.say("after the cut")
            inner = assert_response_shape(await ui.response(within=10), session_id)
            assert inner["is_success"] is True
            assert json.loads(inner["response"])["history"][-1] == "user"
