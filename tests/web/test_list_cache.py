"""The agent and flow lists are answered from the app's cache while nothing of theirs changed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from uuid import UUID

import anyio
import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import (
    CATALOGUE_CHANNEL,
    Agent,
    AgentListings,
    AgentRepository,
    CatalogueVersions,
    FlowListings,
    listen_for_catalogue_changes,
)
from web import Settings, create_app
from web.services import AppServices

from .conftest import Agents, LoggedIn, Users


@pytest.fixture(name="versions")
async def _versions(database_url: str) -> AsyncIterator[CatalogueVersions]:
    versions = CatalogueVersions()
    async with listen_for_catalogue_changes(database_url, versions):
        yield versions


@pytest.fixture(name="app")
def _app(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    versions: CatalogueVersions,
) -> Quart:
    services = AppServices(settings, sessionmaker, catalogue=versions)
    return create_app(settings, sessionmaker, services=services)


@pytest.fixture(name="settle")
def _settle(
    versions: CatalogueVersions, sessionmaker: async_sessionmaker[AsyncSession]
) -> Callable[[], Awaitable[None]]:
    async def settle() -> None:
        """Wait until every change committed so far has been heard.

        A late notification of the set-up's own writes would rightly make a list be read
        again; the notifications of one listener arrive in commit order, so once a marker
        sent now is heard, so is everything before it.
        """
        marker = uuid.uuid4()
        async with sessionmaker.begin() as db:
            await db.execute(
                text("SELECT pg_notify(:channel, :marker)"),
                {"channel": CATALOGUE_CHANNEL, "marker": str(marker)},
            )
        with anyio.fail_after(5):
            while (versions.current(marker) or (0, 0))[1] == 0:  # noqa: ASYNC110
                await anyio.sleep(0.005)

    return settle


@pytest.fixture(name="reads")
def _reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the list statements that reach the database."""
    counts = {"agents": 0, "flows": 0}
    for name, cls in (("agents", AgentListings), ("flows", FlowListings)):
        original = cls.versions

        async def counted(
            self: Any, *args: Any, _o: Any = original, _n: str = name, **kw: Any
        ) -> Any:
            counts[_n] += 1
            return await _o(self, *args, **kw)

        monkeypatch.setattr(cls, "versions", counted)
    return counts


async def body(client: QuartClient, path: str, user: LoggedIn) -> Any:
    response = await client.get(path, headers=user.headers)
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()


async def a_flow(client: QuartClient, agents: Agents, user: LoggedIn) -> Any:
    members = [await agents.register(user, active=True) for _ in range(2)]
    flow = {
        "name": "pair",
        "description": "two agents",
        "flow": [{"id": m["id"], "type": "genai"} for m in members],
    }
    response = await client.post("/api/agentflows/register", json=flow, headers=user.headers)
    assert response.status_code == 200, await response.get_data()
    return members


class TestListCache:
    async def test_a_list_is_read_once_while_nothing_changes(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        reads: dict[str, int],
        settle: Callable[[], Awaitable[None]],
    ) -> None:
        user = await users.login()
        await a_flow(client, agents, user)
        await settle()
        first = await body(client, "/api/agents/", user)
        flows = await body(client, "/api/agentflows/", user)
        for _ in range(3):
            assert await body(client, "/api/agents/", user) == first
            assert await body(client, "/api/agentflows/", user) == flows
        assert reads == {"agents": 1, "flows": 1}
        # Paging is part of what is cached.
        assert len(await body(client, "/api/agents/?limit=1", user)) == 1
        assert reads["agents"] == 2

    async def test_the_callers_own_write_is_seen_at_once(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        versions: CatalogueVersions,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Notifications may come in any time after the commit: here they never do.
        monkeypatch.setattr(versions, "heard", lambda payload: None)
        user = await users.login()
        agent = await agents.register(user, description="before")
        assert (await body(client, "/api/agents/", user))[0]["agent_description"] == "before"
        change = {"name": "renamed", "description": "after", "input_parameters": {}}
        response = await client.patch(
            f"/api/agents/{agent['id']}", json=change, headers=user.headers
        )
        assert response.status_code == 200
        # No wait for the database's notification: the write itself moved the version on.
        assert (await body(client, "/api/agents/", user))[0]["agent_description"] == "after"
        await client.delete(f"/api/agents/{agent['id']}", headers=user.headers)
        assert await body(client, "/api/agents/", user) == []

    async def test_a_write_from_elsewhere_is_seen_once_notified(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        members = await a_flow(client, agents, user)
        assert (await body(client, "/api/agentflows/", user))[0]["is_active"] is True
        # The router's registry, another server or an operator takes an agent away.
        async with sessionmaker.begin() as session:
            await session.execute(
                update(Agent).where(Agent.id == UUID(members[0]["id"])).values(is_active=False)
            )
        with anyio.fail_after(5):
            while (await body(client, "/api/agentflows/", user))[0]["is_active"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        listed = {a["agent_id"]: a for a in await body(client, "/api/agents/", user)}
        assert listed[members[0]["id"]]["is_active"] is False

    async def test_users_never_share_an_answer(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        alice, bob = await users.login(), await users.login()
        await agents.register(alice)
        assert len(await body(client, "/api/agents/", alice)) == 1
        assert await body(client, "/api/agents/", bob) == []

    async def test_nothing_is_cached_while_changes_cannot_be_heard(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        versions: CatalogueVersions,
        reads: dict[str, int],
    ) -> None:
        user = await users.login()
        await agents.register(user)
        versions.deaf()
        for _ in range(3):
            await body(client, "/api/agents/", user)
        assert reads["agents"] == 3


class TestActiveListCache:
    async def test_the_masters_list_is_read_once_and_follows_the_router(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        monkeypatch: pytest.MonkeyPatch,
        settle: Callable[[], Awaitable[None]],
    ) -> None:
        reads: list[UUID] = []
        original = AgentRepository.list_active_for_user

        async def counted(self: AgentRepository, owner_id: UUID, **kw: Any) -> Any:
            reads.append(owner_id)
            return await original(self, owner_id, **kw)

        monkeypatch.setattr(AgentRepository, "list_active_for_user", counted)
        user = await users.login()
        members = await a_flow(client, agents, user)
        await settle()
        path = "/api/agents/active?agent_type=all"
        first = await body(client, path, user)
        assert first["count_active_connections"] == 3  # the flow, then its two agents
        assert await body(client, path, user) == first
        assert len(reads) == 1  # one answer built: all active agents (the page is cut from them)
        # The router's registry marks an agent gone: the master's next question sees it.
        await agents.set_active(UUID(members[0]["id"]), active=False)
        with anyio.fail_after(5):
            while (await body(client, path, user))["count_active_connections"] != 1:  # noqa: ASYNC110
                await anyio.sleep(0.01)
