"""Listings read through the driver, and the row versions that name their content."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from persistence import (
    AgentListings,
    AgentRepository,
    FlowListings,
    FlowRepository,
    User,
    UserRepository,
    open_driver_connection,
)
from persistence.repositories.agents import driver_connection


async def _user(session: AsyncSession, name: str) -> User:
    return await UserRepository(session).add(f"{name}-{uuid.uuid4().hex[:8]}", "hash")


async def _agent(
    session: AsyncSession, owner: User, name: str, description: str, *, active: bool = False
) -> uuid.UUID:
    agent_id = uuid.uuid4()
    await AgentRepository(session).add(
        id=agent_id,
        name=name,
        alias=f"{name}_{agent_id.hex[:8]}",
        description=description,
        jwt=f"jwt-{agent_id}",
        creator_id=owner.id,
        input_parameters={"function": {"name": name}, "b": [1.5, "ü"]},
        is_active=active,
    )
    return agent_id


class TestAgentListings:
    async def test_versions_follow_the_listing(self, db_session: AsyncSession) -> None:
        alice, bob = await _user(db_session, "alice"), await _user(db_session, "bob")
        first = await _agent(db_session, alice, "first", "weather station")
        second = await _agent(db_session, alice, "second", "Weather 100%")
        await _agent(db_session, alice, "", "hidden without a filter")
        await _agent(db_session, bob, "first", "not alice's")
        repo = AgentRepository(db_session)
        listings = AgentListings(await driver_connection(db_session))
        for filters in (
            {},
            {"name": "first"},
            {"description": "WEATHER"},
            {"description": "%"},
            {"name": "second", "description": "100%"},
            {"offset": 1, "limit": 1},
        ):
            listed = await repo.list_for_user(alice.id, **filters)
            versions = await listings.versions(alice.id, **filters)
            assert versions == [agent.version for agent in listed], filters
        [agent] = await repo.list_for_user(alice.id, name="first")
        assert agent.id == first and agent.version.startswith(f"{first}:")
        assert (
            agent.input_parameters_json == '{"function": {"name": "first"}, "b": [1.5, "\\u00fc"]}'
        )
        assert isinstance(agent.created_at, datetime) and agent.jwt == f"jwt-{first}"
        assert [a.id for a in await repo.list_for_user(alice.id, description="100%")] == [second]
        assert await listings.versions(uuid.uuid4()) == []

    async def test_a_committed_change_is_a_new_version(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker.begin() as session:
            owner = await _user(session, "owner")
            agent_id = await _agent(session, owner, "a", "d")
        async with sessionmaker() as session:
            [before] = await AgentListings(await driver_connection(session)).versions(owner.id)
        async with sessionmaker.begin() as session:
            # updated_at stays: the transaction id alone tells the versions apart.
            await session.execute(
                text("UPDATE agents SET jwt = 'other' WHERE id = :id"), {"id": agent_id}
            )
        async with sessionmaker() as session:
            [after] = await AgentListings(await driver_connection(session)).versions(owner.id)
            [listed] = await AgentRepository(session).list_for_user(owner.id)
        assert after != before and listed.version == after and listed.jwt == "other"


class TestFlowListings:
    async def test_versions_and_active_agents(self, db_session: AsyncSession) -> None:
        alice, bob = await _user(db_session, "alice"), await _user(db_session, "bob")
        active = await _agent(db_session, alice, "on", "d", active=True)
        idle = await _agent(db_session, alice, "off", "d")
        await _agent(db_session, bob, "bobs", "d", active=True)
        flows = FlowRepository(db_session)
        items = [{"id": str(active), "type": "genai"}, {"id": str(idle), "type": "genai"}]
        older = await flows.add(
            name="older", alias="older", description="d", flow=items, creator_id=alice.id
        )
        newer = await flows.add(
            name="newer", alias="newer", description="d", flow=items, creator_id=alice.id
        )
        await flows.add(name="bobs", alias="bobs", description="d", flow=items, creator_id=bob.id)
        listings = FlowListings(await driver_connection(db_session))
        listed = await listings.rows(alice.id)
        assert [flow.id for flow in listed] == [newer.id, older.id]
        assert listed[0].flow_json.startswith('[{"id": "')
        page = await listings.versions(alice.id)
        assert page.versions == [flow.version for flow in listed]
        assert page.active_agent_ids == [str(active)]
        page = await listings.versions(alice.id, offset=1, limit=1)
        assert page.versions == [listed[1].version]
        assert page.active_agent_ids == [str(active)]
        assert await listings.rows(alice.id, limit=0) == []


class TestOpenDriverConnection:
    async def test_reads_commit_on_their_own(self, engine: AsyncEngine) -> None:
        async with open_driver_connection(engine) as driver:
            assert await driver.fetchval("SELECT 1") == 1
            assert not driver.is_in_transaction()

    async def test_a_lost_connection_leaves_the_pool(self, engine: AsyncEngine) -> None:
        async with open_driver_connection(engine) as driver:
            lost = await driver.fetchval("SELECT pg_backend_pid()")
        with pytest.raises((OSError, asyncpg.exceptions.ConnectionDoesNotExistError)):
            async with open_driver_connection(engine) as driver:
                assert await driver.fetchval("SELECT pg_backend_pid()") == lost
                # The server ends this very connection under its next statement.
                await driver.fetchval("SELECT pg_terminate_backend(pg_backend_pid())")
        async with open_driver_connection(engine) as driver:
            assert await driver.fetchval("SELECT pg_backend_pid()") != lost
