"""Agent events are applied in batches, off the log queue, in the order they came per
agent: a burst of registrations is a few transactions, not one per agent, and never
waits behind a batch of logs."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select

from actors.registry import RegistryActor, RegistryClient, RegistryConfig, registry_spec
from actors.session import AgentLogged, AgentRegistered, AgentUnregistered
from persistence import Agent, AgentFlow, AgentRepository, FlowRepository, UserRepository
from runtime import open_actor_system
from runtime.testing import wait_for

from ..agents import SECRET, is_active, mint_jwt, wait_active
from .test_registry import HeldSink

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from runtime import ActorRef, ActorSystem

SCHEMA = {"type": "function", "function": {"name": "f", "description": "d"}}


@dataclass
class CountsTransactions:
    """A sessionmaker that counts the transactions begun on it (real sessions)."""

    sessionmaker: async_sessionmaker[AsyncSession]
    begun: int = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.sessionmaker(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        self.begun += 1
        async with self.sessionmaker.begin() as db:
            yield db


async def add_agents(
    sessionmaker: async_sessionmaker[AsyncSession], count: int
) -> list[tuple[uuid.UUID, str]]:
    """Add ``count`` inactive agents of one user; return their ids and JWTs."""
    agents = []
    async with sessionmaker.begin() as db:
        user = await UserRepository(db).add(f"user-{uuid.uuid4().hex[:10]}", "x")
        for n in range(count):
            agent_id = uuid.uuid4()
            token = mint_jwt(agent_id, user.id)
            await AgentRepository(db).add(
                id=agent_id,
                name=f"agent_{n}",
                alias=f"agent_{n}_{uuid.uuid4().hex[:6]}",
                description="",
                jwt=token,
                creator_id=user.id,
                input_parameters={},
            )
            agents.append((agent_id, token))
    return agents


def registered(agent_id: uuid.UUID, token: str, name: str = "Echo Agent") -> AgentRegistered:
    return AgentRegistered(str(agent_id), token, name, "echoes", SCHEMA)


@contextlib.asynccontextmanager
async def open_registry(
    sessionmaker: Any, *, sink: Any = None
) -> AsyncIterator[tuple[ActorSystem, ActorRef[Any], RegistryActor]]:
    spec = registry_spec(RegistryConfig(SECRET), sessionmaker, session=None, sink=sink)
    async with open_actor_system(spec) as system:
        ref = system.ref_of("registry")
        registry = ref._cell.instance
        assert isinstance(registry, RegistryActor)
        # The start-up reset is done: what follows is the burst alone.
        await wait_for(lambda: registry.statistics().pending_events == 0, timeout=10)
        yield system, ref, registry


async def settle(ref: ActorRef[Any], registry: RegistryActor) -> None:
    """Wait until every event told so far is applied."""
    await RegistryClient(ref).statistics()  # the mailbox is first in, first out
    await wait_for(lambda: registry.statistics().pending_events == 0, timeout=30)


async def active_count(sessionmaker: async_sessionmaker[AsyncSession], ids: list[uuid.UUID]) -> int:
    async with sessionmaker() as db:
        rows = await db.scalars(select(Agent.id).where(Agent.id.in_(ids), Agent.is_active))
        return len(rows.all())


async def test_a_burst_of_registrations_is_a_few_transactions(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    agents = await add_agents(sessionmaker, 300)
    counting = CountsTransactions(sessionmaker)
    async with open_registry(counting) as (_, ref, registry):
        before = counting.begun
        for agent_id, token in agents:
            await ref.tell(registered(agent_id, token))
        await wait_for(lambda: registry.statistics().registered == 300, timeout=20)
        transactions = counting.begun - before
    # One transaction per agent before; each batch takes what queued meanwhile.
    assert transactions <= 30
    assert await active_count(sessionmaker, [a for a, _ in agents]) == 300
    async with sessionmaker() as db:
        agent = await db.get(Agent, agents[0][0])
    assert agent is not None
    assert (agent.name, agent.description, agent.input_parameters) == (
        "echo_agent",
        "echoes",
        SCHEMA,
    )
    assert agent.alias.startswith("echo_agent_")


async def test_each_agents_events_keep_their_order_within_a_burst(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    (leaves, leaves_token), (back, back_token), (stays, stays_token) = await add_agents(
        sessionmaker, 3
    )
    unknown = uuid.uuid4()
    async with sessionmaker.begin() as db:
        await AgentRepository(db).set_active(back, True)
    async with open_registry(sessionmaker) as (_, ref, registry):
        for event in (
            registered(leaves, leaves_token),
            AgentUnregistered(str(back)),
            registered(stays, stays_token),
            registered(unknown, mint_jwt(unknown, uuid.uuid4())),  # signed, but no row
            AgentUnregistered(str(leaves)),
            registered(back, back_token),
        ):
            await ref.tell(event)
        await settle(ref, registry)
        stats = registry.statistics()
    assert (stats.registered, stats.unregistered, stats.rejected) == (3, 2, 1)
    assert not await is_active(sessionmaker, leaves)  # registered, then gone
    assert await is_active(sessionmaker, back)  # gone, then registered again
    assert await is_active(sessionmaker, stays)


async def test_a_registration_does_not_wait_behind_a_batch_of_logs(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    (agent_id, token), (logger_id, _) = await add_agents(sessionmaker, 2)
    sink = HeldSink()
    sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    async with open_registry(sessionmaker, sink=sink) as (_, ref, registry):
        for n in range(100):
            await ref.tell(AgentLogged(str(logger_id), sid, rid, "info", f"line {n}"))
        with anyio.fail_after(10):
            await sink.holding.wait()
        # The log writer is held inside its first batch; the registration goes on.
        await ref.tell(registered(agent_id, token))
        await wait_active(sessionmaker, agent_id, True, within=10)
        assert not sink.entries  # still held
        sink.release.set()
        await wait_for(lambda: registry.statistics().written == 100, timeout=10)


async def test_flows_follow_a_batch(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    (a, a_token), (b, b_token), (c, _) = await add_agents(sessionmaker, 3)
    async with sessionmaker() as db:
        owner = await db.scalar(select(Agent.creator_id).where(Agent.id == a))
    assert owner is not None
    async with sessionmaker.begin() as db:
        flows = FlowRepository(db)
        both = await flows.add(
            name="ab", alias="ab_abcdef", description="d", creator_id=owner, is_active=False,
            flow=[{"id": str(a), "type": "genai"}, {"id": str(b), "type": "genai"}],
        )  # fmt: skip
        with_c = await flows.add(
            name="ac", alias="ac_abcdef", description="d", creator_id=owner, is_active=True,
            flow=[{"id": str(a), "type": "genai"}, {"agent_id": str(c)}],
        )  # fmt: skip
    async with open_registry(sessionmaker) as (_, ref, registry):
        # c is marked inactive by the start-up reset: register it back first.
        async with sessionmaker.begin() as db:
            await AgentRepository(db).set_active(c, True)
        for event in (
            registered(a, a_token),
            registered(b, b_token),
            AgentUnregistered(str(c)),
        ):
            await ref.tell(event)
        await settle(ref, registry)
    async with sessionmaker() as db:
        states = dict(
            (row[0], row[1]) for row in await db.execute(select(AgentFlow.id, AgentFlow.is_active))
        )
    assert states == {both.id: True, with_c.id: False}


async def test_a_registration_the_database_refuses_costs_only_itself(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    agents = await add_agents(sessionmaker, 20)
    poison_id = agents[7][0]
    config = RegistryConfig(SECRET)
    spec = registry_spec(config, sessionmaker, session=None)
    async with open_actor_system(spec) as system:
        ref = system.ref_of("registry")
        registry = ref._cell.instance
        assert isinstance(registry, RegistryActor)
        await wait_for(lambda: registry.statistics().pending_events == 0, timeout=10)
        for agent_id, token in agents:
            schema: Any = {"default": float("nan")} if agent_id == poison_id else SCHEMA
            await ref.tell(AgentRegistered(str(agent_id), token, "a", "d", schema))
        await settle(ref, registry)
        stats = registry.statistics()
        assert system.snapshot().find("registry") is not None
    assert (stats.registered, stats.events_failed) == (19, 1)
    assert await active_count(sessionmaker, [a for a, _ in agents]) == 19
    assert not await is_active(sessionmaker, poison_id)
