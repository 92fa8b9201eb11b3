"""A database outage delays the registry's work, it does not lose it (while the buffer
holds) nor spend a restart.

The outage is real: the registry writes to a database of its own, which the test closes
to new connections and whose sessions it terminates, then opens again.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

import persistence
from actors.registry import RegistryConfig
from persistence import AgentRepository, Log
from runtime import ActorState, Backoff
from runtime.testing import wait_for
from tests.actors.router.conftest import open_peer
from tests.pg import _admin, _new_database

from ..agents import (
    SECRET,
    RecordingSink,
    Stack,
    add_agent,
    is_active,
    mint_jwt,
    open_stack,
    start_agent,
    stop_processes,
    wait_stat,
)
from .test_registry import log_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from anyio.abc import Process

FAST_RETRY = Backoff(initial=0.02, maximum=0.1, reset_after=0.0)


@pytest.fixture(name="own_database_url")
def _own_database_url(_server_url: str) -> Iterator[str]:
    with _new_database(_server_url) as url:
        asyncio.run(persistence.upgrade_to_head(url))
        yield url


async def set_reachable(url: str, reachable: bool) -> None:
    name = make_url(url).database
    admin = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    await _admin(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(reachable).lower()}')
    if not reachable:
        await _admin(
            admin,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        )


@pytest.fixture(name="own_sessionmaker")
async def _own_sessionmaker(own_database_url: str) -> AsyncIterator[Any]:
    engine = persistence.create_engine(own_database_url, pool_size=2, max_overflow=2)
    try:
        yield persistence.create_sessionmaker(engine)
    finally:
        await set_reachable(own_database_url, True)
        await engine.dispose()


async def test_logs_survive_a_database_outage(own_database_url: str, own_sessionmaker: Any) -> None:
    sessionmaker = own_sessionmaker
    agent_id, user_id, token = await add_agent(sessionmaker)
    sink = RecordingSink()
    config = RegistryConfig(
        "registry-test-secret-of-at-least-32-bytes",
        retry=Backoff(initial=0.02, maximum=0.1, reset_after=0.0),
    )
    sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    async with (
        open_stack(sessionmaker, sink=sink, config=config) as stack,
        open_peer(stack.url, **{"X-Custom-Authorization": token}) as agent,
    ):
        await agent.send(log_frame(agent_id, sid, rid, "before"))
        await wait_stat(stack, "written", 1)
        await set_reachable(own_database_url, False)
        for n in range(1000):
            await agent.send(log_frame(agent_id, sid, rid, f"during {n}"))
        await wait_stat(stack, "retries", 3)
        stats = stack.registry.statistics()
        assert stats.written == 1
        assert stats.buffered == 1000
        assert stats.last_error is not None
        await set_reachable(own_database_url, True)
        await wait_stat(stack, "written", 1001, within=20)
        stats = stack.registry.statistics()
    assert stats.overflowed == stats.failed == stats.dropped == 0
    async with sessionmaker() as db:
        stored = await db.scalar(select(func.count()).select_from(Log))
    assert stored == 1001
    assert [e.message for e in sink.entries] == ["before"] + [f"during {n}" for n in range(1000)]
    assert {e.creator_id for e in sink.entries} == {user_id}


async def test_overflow_is_counted(own_database_url: str, own_sessionmaker: Any) -> None:
    sessionmaker = own_sessionmaker
    agent_id, _, token = await add_agent(sessionmaker)
    config = RegistryConfig(
        "registry-test-secret-of-at-least-32-bytes",
        buffer_limit=100,
        retry=Backoff(initial=0.02, maximum=0.1, reset_after=0.0),
    )
    sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    async with (
        open_stack(sessionmaker, config=config) as stack,
        open_peer(stack.url, **{"X-Custom-Authorization": token}) as agent,
    ):
        await set_reachable(own_database_url, False)
        for n in range(150):
            await agent.send(log_frame(agent_id, sid, rid, f"line {n}"))
        await wait_stat(stack, "overflowed", 50)
        await set_reachable(own_database_url, True)
        await wait_stat(stack, "written", 100, within=20)
        stats = stack.registry.statistics()
    assert (stats.written, stats.overflowed) == (100, 50)


def registry_info(stack: Stack) -> tuple[ActorState, int]:
    """The registry's state and restarts, as the health view shows them."""
    info = stack.system.snapshot().find("registry")
    assert info is not None
    return info.state, info.restarts


async def wait_registry(stack: Stack, *, pending: int, within: float = 10.0) -> None:
    """Wait until exactly ``pending`` agent events wait for the database."""
    await wait_for(lambda: stack.registry.statistics().pending_events == pending, timeout=within)


async def test_a_start_needs_no_database(own_database_url: str, own_sessionmaker: Any) -> None:
    agent_id, _, _ = await add_agent(own_sessionmaker)
    async with own_sessionmaker.begin() as db:
        await AgentRepository(db).set_active(agent_id, True)
    await set_reachable(own_database_url, False)
    config = RegistryConfig(SECRET, retry=FAST_RETRY)
    async with open_stack(own_sessionmaker, config=config) as stack:
        await wait_stat(stack, "retries", 3)
        stats = stack.registry.statistics()
        assert stats.waiting_since is not None
        assert stats.pending_events == 1  # the start-up reset of every agent
        assert registry_info(stack) == (ActorState.RUNNING, 0)
        await set_reachable(own_database_url, True)
        await wait_registry(stack, pending=0)
        assert stack.registry.statistics().waiting_since is None
        assert not await is_active(own_sessionmaker, agent_id)
        assert registry_info(stack) == (ActorState.RUNNING, 0)


async def test_registrations_wait_out_an_outage_in_order(
    own_database_url: str, own_sessionmaker: Any, python_203: str
) -> None:
    sessionmaker = own_sessionmaker
    stays, _, stays_token = await add_agent(sessionmaker)
    leaves, _, leaves_token = await add_agent(sessionmaker)
    unknown_token = mint_jwt(uuid.uuid4(), uuid.uuid4())  # well signed, but no such row
    config = RegistryConfig(SECRET, retry=FAST_RETRY)
    processes: list[Process] = []
    sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        async with (
            open_stack(sessionmaker, config=config) as stack,
            open_peer(stack.url, **{"X-Custom-Authorization": stays_token}) as logger_peer,
        ):
            await wait_registry(stack, pending=0)  # the start-up reset is done
            await set_reachable(own_database_url, False)
            await start_agent(python_203, "echo", stack.url, stays_token, processes)
            leaving = await start_agent(python_203, "echo", stack.url, leaves_token, processes)
            refused = await start_agent(python_203, "echo", stack.url, unknown_token, processes)
            await wait_registry(stack, pending=3, within=20)
            leaving.kill()
            await wait_registry(stack, pending=4)  # ... then its disconnect
            for n in range(100):
                await logger_peer.send(log_frame(stays, sid, rid, f"during {n}"))
            await wait_stat(stack, "retries", 5)
            stats = stack.registry.statistics()
            assert stats.waiting_since is not None
            assert (stats.registered, stats.unregistered, stats.rejected) == (0, 0, 0)
            assert refused.returncode is None  # its answer needs the database
            assert registry_info(stack) == (ActorState.RUNNING, 0)

            await set_reachable(own_database_url, True)
            with anyio.fail_after(20):
                await refused.wait()  # the error frame went out once the row was checked
            await wait_stat(stack, "written", 100, within=20)
            await wait_registry(stack, pending=0)
            stats = stack.registry.statistics()
            assert stats.waiting_since is None
            assert (stats.registered, stats.unregistered, stats.rejected) == (2, 1, 1)
            assert await is_active(sessionmaker, stays)
            assert not await is_active(sessionmaker, leaves)  # registered, then gone
            assert registry_info(stack) == (ActorState.RUNNING, 0)
            assert not stack.system.failed
    finally:
        await stop_processes(processes)
    async with sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(Log)) == 100
