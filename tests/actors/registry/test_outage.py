"""A database outage delays logs, it does not lose them (while the buffer holds).

The outage is real: the registry writes to a database of its own, which the test closes
to new connections and whose sessions it terminates, then opens again.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

import persistence
from actors.registry import RegistryConfig
from persistence import Log
from runtime import Backoff
from tests.actors.router.conftest import open_peer
from tests.pg import _admin, _new_database

from ..agents import RecordingSink, add_agent, open_stack, wait_stat
from .test_registry import log_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


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
