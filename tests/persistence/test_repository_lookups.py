"""The look-ups the HTTP routes rely on: existence checks, active ids, legacy flow items."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

import persistence
from persistence import AgentRepository, FlowRepository, User, UserRepository


async def _agent(
    session: AsyncSession, owner: User, name: str, *, active: bool = False
) -> persistence.Agent:
    agent_id = uuid.uuid4()
    return await AgentRepository(session).add(
        id=agent_id,
        name=name,
        alias=f"{name}_{agent_id.hex[:6]}",
        description=f"{name} does things",
        jwt=f"jwt-{agent_id}",
        creator_id=owner.id,
        input_parameters={},
        is_active=active,
    )


class TestExists:
    async def test_user(self, db_session: AsyncSession, alice: User) -> None:
        repo = UserRepository(db_session)
        assert await repo.exists(alice.id)
        assert not await repo.exists(uuid.uuid4())

    async def test_agent_any_owner_or_scoped(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        repo = AgentRepository(db_session)
        agent = await _agent(db_session, alice, "a")
        assert await repo.exists(agent.id)
        assert await repo.exists(agent.id, owner_id=alice.id)
        assert not await repo.exists(agent.id, owner_id=bob.id)
        assert not await repo.exists(uuid.uuid4())


class TestActive:
    async def test_active_ids_all_or_some(
        self, db_session: AsyncSession, alice: User, bob: User
    ) -> None:
        repo = AgentRepository(db_session)
        on = await _agent(db_session, alice, "on", active=True)
        off = await _agent(db_session, alice, "off")
        await _agent(db_session, bob, "bobs", active=True)
        assert await repo.active_ids(alice.id) == {on.id}
        assert await repo.active_ids(alice.id, [off.id]) == set()
        assert await repo.active_ids(alice.id, []) == set()

    async def test_list_active_without_limit(self, db_session: AsyncSession, alice: User) -> None:
        repo = AgentRepository(db_session)
        made = [await _agent(db_session, alice, f"a{i}", active=True) for i in range(3)]
        listed = await repo.list_active_for_user(alice.id, limit=None)
        assert {a.id for a in listed} == {a.id for a in made}
        assert len(await repo.list_active_for_user(alice.id, limit=2)) == 2


class TestFlowItems:
    def test_ids_are_lowercased(self) -> None:
        upper = str(uuid.uuid4()).upper()
        assert persistence.flow_item_ids([{"id": upper, "type": "genai"}]) == [
            (upper.lower(), "genai")
        ]
        assert persistence.flow_item_ids("not a list") == []

    async def test_legacy_items_are_deactivated(
        self, db_session: AsyncSession, alice: User
    ) -> None:
        agent = await _agent(db_session, alice, "a", active=True)
        other = await _agent(db_session, alice, "b", active=True)
        repo = FlowRepository(db_session)
        legacy = await repo.add(
            name="old",
            alias="old_abcdef",
            description="d",
            flow=[{"agent_id": str(agent.id)}, {"agent_id": str(other.id)}],
            creator_id=alice.id,
        )
        assert await repo.deactivate_containing(agent.id, owner_id=alice.id) == 1
        await db_session.refresh(legacy)
        assert legacy.is_active is False
