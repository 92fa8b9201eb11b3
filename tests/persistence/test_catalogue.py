"""Catalogue versions: the database tells every listener whose agents or flows changed."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import text, update

from persistence import (
    Agent,
    AgentRepository,
    CatalogueVersions,
    User,
    listen_for_catalogue_changes,
)

from .conftest import add_user

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from persistence._catalogue import CatalogueVersion

    Sessions = async_sessionmaker[AsyncSession]


async def add_agent(sessionmaker: Sessions, owner: User) -> uuid.UUID:
    agent_id = uuid.uuid4()
    async with sessionmaker.begin() as session:
        await AgentRepository(session).add(
            id=agent_id,
            name=f"a{agent_id.hex[:6]}",
            alias=f"a{agent_id.hex}",
            description="d",
            input_parameters={},
            jwt="t",
            creator_id=owner.id,
        )
    return agent_id


async def changed_from(
    versions: CatalogueVersions, user_id: uuid.UUID, before: CatalogueVersion | None
) -> CatalogueVersion | None:
    """Wait (a little) for the notification to arrive; return the new version."""
    with anyio.fail_after(5):
        while versions.current(user_id) == before:  # noqa: ASYNC110 - a notification has no event
            await anyio.sleep(0.005)
    return versions.current(user_id)


class TestCatalogueVersions:
    def test_versions_exist_only_while_listening(self) -> None:
        versions = CatalogueVersions()
        user = uuid.uuid4()
        assert not versions.live and versions.current(user) is None
        versions.listening()
        first = versions.current(user)
        assert versions.live and first is not None
        versions.changed(user)
        assert versions.current(user) != first
        assert versions.current(uuid.uuid4()) is not None
        versions.deaf()
        assert versions.current(user) is None

    def test_every_reconnect_and_star_moves_everyone_on(self) -> None:
        versions = CatalogueVersions()
        user, other = uuid.uuid4(), uuid.uuid4()
        versions.listening()
        before = (versions.current(user), versions.current(other))
        versions.heard("*")
        after = (versions.current(user), versions.current(other))
        assert before[0] != after[0] and before[1] != after[1]
        versions.deaf()
        versions.listening()
        assert versions.current(user) not in {before[0], after[0]}
        versions.heard("not a uuid")  # unexpected: trust nothing derived so far
        assert versions.current(other) not in {before[1], after[1]}


class TestListening:
    async def test_writes_by_anyone_are_heard_per_owner(
        self, database_url: str, sessionmaker: Sessions
    ) -> None:
        alice = await add_user(sessionmaker, "alice")
        bob = await add_user(sessionmaker, "bob")
        versions = CatalogueVersions()
        async with listen_for_catalogue_changes(database_url, versions) as lost:
            assert versions.live
            alice_before, bob_before = versions.current(alice.id), versions.current(bob.id)
            agent_id = await add_agent(sessionmaker, alice)
            alice_after = await changed_from(versions, alice.id, alice_before)
            assert versions.current(bob.id) == bob_before

            # A plain SQL update, as another server or an operator would make it.
            async with sessionmaker.begin() as session:
                await session.execute(
                    update(Agent).where(Agent.id == agent_id).values(is_active=True)
                )
            await changed_from(versions, alice.id, alice_after)
            assert versions.current(bob.id) == bob_before

            async with sessionmaker.begin() as session:
                await session.execute(text("TRUNCATE agentworkflows CASCADE"))
            await changed_from(versions, bob.id, bob_before)
            assert not lost.is_set()
        assert not versions.live

    async def test_a_lost_connection_ends_the_versions(
        self, database_url: str, sessionmaker: Sessions
    ) -> None:
        versions = CatalogueVersions()
        async with listen_for_catalogue_changes(database_url, versions) as lost:
            async with sessionmaker.begin() as session:
                await session.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
                    )
                )
            with anyio.fail_after(5):
                await lost.wait()
        assert not versions.live
