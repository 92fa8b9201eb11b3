"""Real agents against the whole server: registration shows at once, so does leaving,
and a token the back-end did not issue stops the agent."""

from __future__ import annotations

import sys
import time
import uuid
from typing import TYPE_CHECKING

import anyio
import jwt

from .conftest import RegisteredAgent

if TYPE_CHECKING:
    from anyio.abc import Process

    from .conftest import Backend, User

# Clients list the active agents right after an agent connects. Milliseconds on a quiet
# machine; the bound is generous so that a busy one does not fail the test, and the
# figure itself is printed.
VISIBLE_WITHIN = 5.0


async def seconds_until(backend: Backend, user: User, agent_id: str, present: bool) -> float:
    started = time.perf_counter()
    with anyio.fail_after(VISIBLE_WITHIN):
        # The API has no change notification; poll it as a client would.
        while (agent_id in await backend.active_ids(user)) is not present:  # noqa: ASYNC110
            await anyio.sleep(0.002)
    return time.perf_counter() - started


class TestAgentPresence:
    async def test_a_connected_agent_is_listed_at_once_and_gone_as_fast(
        self, backend: Backend, processes: list[Process]
    ) -> None:
        owner = await backend.user()
        stranger = await backend.user()
        agent = await backend.agent(owner)
        assert agent.id not in await backend.active_ids(owner)

        process = await backend.start_agent(sys.executable, agent, processes)
        listed = await seconds_until(backend, owner, agent.id, True)
        assert agent.id not in await backend.active_ids(stranger)

        process.terminate()
        with anyio.fail_after(5):
            while backend.table().conn_id_of(agent.id) is not None:  # noqa: ASYNC110
                await anyio.sleep(0.002)
        gone = await seconds_until(backend, owner, agent.id, False)
        print(f"listed {listed * 1000:.1f} ms after connecting, gone {gone * 1000:.1f} ms after")

    async def test_a_token_we_did_not_issue_stops_the_agent(
        self, backend: Backend, processes: list[Process]
    ) -> None:
        owner = await backend.user()
        agent = await backend.agent(owner)
        claims = jwt.decode(agent.jwt, options={"verify_signature": False})
        forged = jwt.encode(claims, "not-the-server-secret-but-long-enough!", algorithm="HS256")
        impostor = RegisteredAgent(agent.id, forged)

        process = await backend.launch_agent(sys.executable, impostor, processes)
        with anyio.fail_after(15):
            await process.wait()
        assert backend.table().conn_id_of(agent.id) is None
        assert agent.id not in await backend.active_ids(owner)

    async def test_a_token_of_a_deleted_agent_stops_the_agent(
        self, backend: Backend, processes: list[Process]
    ) -> None:
        owner = await backend.user()
        agent = await backend.agent(owner)
        response = await backend.http.delete(f"/api/agents/{agent.id}", headers=owner.headers)
        assert response.status_code in (200, 204), response.text

        process = await backend.launch_agent(sys.executable, agent, processes)
        with anyio.fail_after(15):
            await process.wait()
        assert uuid.UUID(agent.id) is not None
