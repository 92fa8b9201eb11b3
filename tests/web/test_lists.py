"""The agent and flow lists: their exact bytes, and the rendering they reuse by row version."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import TypeAdapter
from quart.testing import QuartClient
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import Agent, AgentFlow
from web import Settings, create_app
from web.blueprints import agents as agents_module
from web.blueprints import flows as flows_module
from web.blueprints.agents import agent_dto
from web.common import RenderCache

from .conftest import Agents, LoggedIn, Users

_LIST = TypeAdapter(list[dict[str, Any]])

# Schemas whose decoding and re-encoding must come out as they always did: non-ASCII
# text, escapes, floats in several notations, an integer beyond 64 bits, a schema
# stored as a JSON string (the first release's form) and one without a function object.
SCHEMAS: list[Any] = [
    {"type": "function", "function": {"name": "x", "description": "Wetter für Zürich ☀"}},
    {
        "function": {
            "name": "y",
            "values": [1e20, 2.5e-05, 0.1, -0.0, 3.0, 123456789012345678901234],
        }
    },
    {"function": {"description": 'quote " backslash \\ tab \t nl \n'}, "b": None, "a": True},
    '{"function": {"name": "stored as text"}}',
    {"function": "not an object", "z": [], "y": {}},
]


async def _list(client: QuartClient, path: str, user: LoggedIn) -> bytes:
    response = await client.get(path, headers=user.headers)
    assert response.status_code == 200
    assert response.content_type == "application/json"
    return await response.get_data(as_text=False)


async def _agents_as_before(
    sessionmaker: async_sessionmaker[AsyncSession], user: LoggedIn
) -> bytes:
    """Render the user's list as the route did with ORM rows and agent_dto."""
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(Agent)
            .where(Agent.creator_id == user.id, Agent.name != "", Agent.description != "")
            .order_by(Agent.created_at, Agent.id)
        )
        return _LIST.dump_json([agent_dto(agent) for agent in rows])


async def _flows_as_before(sessionmaker: async_sessionmaker[AsyncSession], user: LoggedIn) -> bytes:
    """Render the user's flows as the route did with ORM rows and its ``_dto``."""
    async with sessionmaker() as session:
        active = await session.scalars(
            select(Agent.id).where(Agent.creator_id == user.id, Agent.is_active.is_(True))
        )
        active_ids = {str(agent_id) for agent_id in active}
        rows = await session.scalars(
            select(AgentFlow)
            .where(AgentFlow.creator_id == user.id)
            .order_by(AgentFlow.created_at.desc(), AgentFlow.id.desc())
        )
        return _LIST.dump_json([flows_module._dto(flow, active_ids) for flow in rows])


class _Renders:
    """Count calls of a module's ``_render_listed``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        self.count = 0
        render = module._render_listed

        def counting(row: Any) -> Any:
            self.count += 1
            return render(row)

        monkeypatch.setattr(module, "_render_listed", counting)

    def take(self) -> int:
        count, self.count = self.count, 0
        return count


class TestAgentList:
    async def test_bytes_as_before(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        registered = [await agents.register(user, input_parameters=s) for s in SCHEMAS]
        await agents.register(user, name="", description="")
        async with sessionmaker.begin() as session:
            # Whole seconds: isoformat would drop the fraction without timespec.
            await session.execute(
                update(Agent)
                .where(Agent.id == UUID(registered[-1]["id"]))
                .values(created_at=datetime(2026, 1, 2, 3, 4, 5))
            )
        expected = await _agents_as_before(sessionmaker, user)
        assert len(_LIST.validate_json(expected)) == len(SCHEMAS)
        assert await _list(client, "/api/agents/", user) == expected
        assert await _list(client, "/api/agents/", user) == expected

    async def test_filters_and_paging(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        first = await agents.register(user, name="same", description="100% sure_thing/x")
        second = await agents.register(user, name="same", description="also SURE")
        empty = await agents.register(user, name="", description="sure")

        async def ids(query: str) -> list[str]:
            listed = _LIST.validate_json(await _list(client, f"/api/agents/{query}", user))
            return [agent["agent_id"] for agent in listed]

        assert await ids("") == [first["id"], second["id"]]
        assert await ids("?offset=1&limit=1") == [second["id"]]
        assert await ids("?limit=0") == []
        assert await ids("?name=same") == [second["id"], first["id"]]
        assert await ids("?description=sure") == [empty["id"], second["id"], first["id"]]
        assert await ids("?description=%25%20sure_") == [first["id"]]
        assert await ids("?description=_") == [first["id"]]
        assert await ids("?description=g/x") == [first["id"]]
        assert await ids("?name=same&description=also&offset=0&limit=5") == [second["id"]]

    async def test_rows_are_rendered_once_per_version(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        renders = _Renders(monkeypatch, agents_module)
        user = await users.login()
        one = await agents.register(user)
        await agents.register(user)
        await _list(client, "/api/agents/", user)
        assert renders.take() == 2
        await _list(client, "/api/agents/", user)
        assert renders.take() == 0
        # A change that leaves updated_at alone, as a script might make, still shows.
        async with sessionmaker.begin() as session:
            await session.execute(
                text("UPDATE agents SET description = 'changed' WHERE id = :id"),
                {"id": UUID(one["id"])},
            )
        listed = _LIST.validate_json(await _list(client, "/api/agents/", user))
        assert renders.take() == 1
        assert [agent["agent_description"] for agent in listed] == ["changed", "does things"]
        assert await _list(client, "/api/agents/", user) == await _agents_as_before(
            sessionmaker, user
        )

    async def test_each_app_has_its_own_cache(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        renders = _Renders(monkeypatch, agents_module)
        user = await users.login()
        await agents.register(user)
        await _list(client, "/api/agents/", user)
        assert renders.take() == 1
        other = create_app(settings, sessionmaker).test_client()
        assert await _list(other, "/api/agents/", user) == await _list(client, "/api/agents/", user)
        assert renders.take() == 1

    async def test_changes_show_at_once(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        agent = await agents.register(user, name="before")
        await _list(client, "/api/agents/", user)
        body = {"name": "after", "description": "d", "input_parameters": SCHEMAS[0]}
        patched = await client.patch(f"/api/agents/{agent['id']}", json=body, headers=user.headers)
        assert patched.status_code == 200
        [listed] = _LIST.validate_json(await _list(client, "/api/agents/", user))
        assert listed["agent_name"] == "after"
        assert listed["agent_schema"]["function"]["name"] == "after"
        await agents.set_active(UUID(agent["id"]))
        [listed] = _LIST.validate_json(await _list(client, "/api/agents/", user))
        assert listed["is_active"] is True
        await client.delete(f"/api/agents/{agent['id']}", headers=user.headers)
        assert await _list(client, "/api/agents/", user) == b"[]"


class TestFlowList:
    async def _flow(self, client: QuartClient, user: LoggedIn, *items: Any) -> Any:
        body = {"name": "f", "description": "d", "flow": list(items)}
        response = await client.post("/api/agentflows/register", json=body, headers=user.headers)
        assert response.status_code == 200, await response.get_data()
        return await response.get_json()

    async def test_bytes_and_activity(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        renders = _Renders(monkeypatch, flows_module)
        user = await users.login()
        one = await agents.register(user, active=True)
        two = await agents.register(user, active=True)
        both = await self._flow(
            client, user, {"id": one["id"], "type": "genai"}, {"agent_id": two["id"]}
        )
        await self._flow(
            client, user, {"id": one["id"], "type": "genai"}, {"id": one["id"], "type": "genai"}
        )
        assert await _list(client, "/api/agentflows/", user) == await _flows_as_before(
            sessionmaker, user
        )
        assert renders.take() == 2
        # An agent going idle changes no flow row, yet its flows list as inactive.
        await agents.set_active(UUID(two["id"]), False)
        listed = await _list(client, "/api/agentflows/", user)
        assert renders.take() == 0
        assert listed == await _flows_as_before(sessionmaker, user)
        assert [flow["is_active"] for flow in _LIST.validate_json(listed)] == [True, False]
        async with sessionmaker.begin() as session:
            await session.execute(
                update(AgentFlow).where(AgentFlow.id == UUID(both["id"])).values(name="renamed")
            )
        listed = await _list(client, "/api/agentflows/?offset=1&limit=1", user)
        assert renders.take() == 1
        assert [flow["name"] for flow in _LIST.validate_json(listed)] == ["renamed"]
        assert await _list(client, "/api/agentflows/?limit=0", user) == b"[]"


class TestRenderCache:
    def test_renders_what_is_missing(self) -> None:
        cache: RenderCache[bytes] = RenderCache(measure=len, max_bytes=10_000)
        assert cache.get_all(["a"]) is None
        assert cache.get_or_render("a", lambda: b"A") == b"A"
        assert cache.get_or_render("a", lambda: pytest.fail("rendered twice")) == b"A"
        assert cache.get_all(["a", "a"]) == [b"A", b"A"]
        assert cache.get_all(["a", "b"]) is None
        assert cache.get_all([]) == []

    def test_memory_is_bounded_oldest_first(self) -> None:
        # Each entry counts its value, its version and a fixed overhead (256 bytes).
        cache: RenderCache[bytes] = RenderCache(measure=len, max_bytes=3 * (256 + 1 + 100))
        for version in "abc":
            cache.get_or_render(version, lambda: b"x" * 100)
        assert len(cache) == 3
        assert cache.get_all(["a"]) is not None  # a hit does not keep an entry longer
        cache.get_or_render("d", lambda: b"x" * 100)
        assert len(cache) == 3
        assert cache.get_all(["a"]) is None
        assert cache.get_all(["b", "c", "d"]) is not None
        cache.get_or_render("e", lambda: b"x" * 200)  # takes the room of two
        assert len(cache) == 2
        assert cache.get_all(["d", "e"]) is not None

    def test_too_large_values_are_not_kept(self) -> None:
        cache: RenderCache[bytes] = RenderCache(measure=len, max_bytes=1000)
        cache.get_or_render("small", lambda: b"x")
        assert cache.get_or_render("big", lambda: b"x" * 1000) == b"x" * 1000
        assert cache.get_all(["big"]) is None
        assert cache.get_all(["small"]) == [b"x"]
