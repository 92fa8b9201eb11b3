"""TurnJanitor: deletes old turns and events, keeps new ones, waits out a cut database."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from actors.janitor import TurnJanitor, TurnJanitorClient, janitor_spec
from persistence import create_engine, create_sessionmaker, utcnow
from runtime import ActorState, open_actor_system
from runtime.testing import wait_for
from tests.faults.proxy import open_database_proxy

from .rows import add_conversation, add_event, add_turn, add_user, count

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]

WEEK = timedelta(days=7)


async def _old_and_new(sessionmaker: Sessions) -> None:
    """Two old finished turns with an event each, and a new turn with two events."""
    user = await add_user(sessionmaker)
    chat = await add_conversation(sessionmaker, user)
    old = utcnow() - WEEK - timedelta(hours=1)
    for _ in range(2):
        request_id = await add_turn(sessionmaker, chat, user, "answered", created_at=old)
        await add_event(sessionmaker, chat, request_id, user, "answered", created_at=old)
    new = await add_turn(sessionmaker, chat, user, "answered")
    await add_event(sessionmaker, chat, new, user, "accepted")
    await add_event(sessionmaker, chat, new, user, "answered")


class TestSweeps:
    async def test_deletes_old_rows_and_keeps_new_ones(self, sessionmaker: Sessions) -> None:
        await _old_and_new(sessionmaker)
        spec = janitor_spec(sessionmaker, retention=WEEK, interval=3600)
        async with open_actor_system(spec) as system:
            janitor = TurnJanitorClient(system.ref_of("janitor"))
            await janitor.sweep()
            stats = await janitor.statistics()
            assert (stats.events_deleted, stats.turns_deleted) == (2, 2)
            assert stats.sweeps >= 1 and not stats.waiting_for_database
        assert await count(sessionmaker, "SELECT count(*) FROM chatturns") == 1
        assert await count(sessionmaker, "SELECT count(*) FROM chatturnevents") == 2

    async def test_sweeps_every_interval(self, sessionmaker: Sessions) -> None:
        spec = janitor_spec(sessionmaker, retention=WEEK, interval=0.05)
        async with open_actor_system(spec) as system:
            instance = system.ref_of("janitor")._cell.instance
            assert isinstance(instance, TurnJanitor)
            await wait_for(lambda: instance.statistics().sweeps >= 3, timeout=10)


class TestDatabaseOutage:
    async def test_waits_out_a_cut_database_without_a_restart(self, database_url: str) -> None:
        async with open_database_proxy(database_url) as (proxy, through):
            engine = create_engine(through, pool_size=2, max_overflow=0, pool_timeout=2)
            sessionmaker = create_sessionmaker(engine)
            try:
                await _old_and_new(sessionmaker)
                proxy.cut()
                spec = janitor_spec(
                    sessionmaker,
                    retention=WEEK,
                    interval=3600,
                    first_pause=0.01,
                    longest_pause=0.2,
                )
                async with open_actor_system(spec) as system:
                    ref = system.ref_of("janitor")
                    instance = ref._cell.instance
                    assert isinstance(instance, TurnJanitor)
                    await wait_for(lambda: instance.statistics().database_waits >= 3, timeout=10)
                    stats = instance.statistics()
                    assert stats.waiting_for_database and stats.sweeps == 0
                    (child,) = system.snapshot().children
                    assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
                    proxy.restore()
                    await wait_for(lambda: instance.statistics().sweeps >= 1, timeout=10)
                    stats = await TurnJanitorClient(ref).statistics()
                    assert (stats.events_deleted, stats.turns_deleted) == (2, 2)
                    assert not stats.waiting_for_database
                    (child,) = system.snapshot().children
                    assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
                    assert not system.failed
            finally:
                await engine.dispose()
