"""LogRelay: logs another process stored reach this process's subscribed sockets once,
read once per notice whatever the number of sockets; what a cut listener missed is
read back on reconnect, within its bounds."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from sqlalchemy import text

import persistence
from actors.fanout import (
    LogFanoutClient,
    LogRelay,
    SocketOutbox,
    Subscriptions,
    log_fanout_spec,
    log_relay_spec,
)
from persistence import LogRepository, NewLog
from persistence.repositories.logs import LogNotice, log_notices
from runtime import ActorSystem, open_actor_system
from runtime.testing import wait_for

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

ME, OTHER = uuid.uuid4(), uuid.uuid4()


class World:
    def __init__(self, system: ActorSystem, sessionmaker: async_sessionmaker[AsyncSession]):
        self.system = system
        self.sessionmaker = sessionmaker
        self.fanout = LogFanoutClient(system)

    @property
    def relay(self) -> LogRelay:
        instance = self.system.ref_of("logrelay")._cell.instance
        assert isinstance(instance, LogRelay)
        return instance

    async def store(
        self, process: uuid.UUID, owner: uuid.UUID, session: uuid.UUID, *messages: str
    ) -> list[int]:
        """Store logs as ``process``'s registry does: the batch and its notice, one
        transaction."""
        async with self.sessionmaker.begin() as db:
            logs = LogRepository(db)
            stored = await logs.add_many(
                [NewLog(session, uuid.uuid4(), None, m, "info", creator_id=owner) for m in messages]
            )
            await logs.notify_stored(process, [log.id for log in stored])
        return [log.id for log in stored]


async def user(sessionmaker: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    async with sessionmaker.begin() as db:
        added = await persistence.UserRepository(db).add(f"u{uuid.uuid4().hex[:8]}", "hash")
        return added.id


async def messages(outbox: SocketOutbox, count: int, within: float = 5.0) -> list[str]:
    """The next ``count`` frames' messages, then whatever else arrives within 0.3 s."""
    got: list[str] = []
    with anyio.fail_after(within):
        while len(got) < count:
            got.append(json.loads(await outbox.receive())["log"]["message"])
    with anyio.move_on_after(0.3):
        while True:
            got.append(json.loads(await outbox.receive())["log"]["message"])
    return got


async def cut_listener(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as db:
        await db.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
            )
        )


@pytest.fixture(autouse=True)
def _discard_outboxes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    made: list[SocketOutbox] = []
    original = SocketOutbox.__init__

    def tracking(self: SocketOutbox, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(SocketOutbox, "__init__", tracking)
    yield
    for outbox in made:
        outbox.discard()


@pytest.fixture(name="world")
async def _world(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[World]:
    subscriptions = Subscriptions()
    async with open_actor_system(
        log_fanout_spec(subscriptions=subscriptions),
        log_relay_spec(database_url, sessionmaker, ME, subscriptions, gap_rows=3),
    ) as system:
        world = World(system, sessionmaker)
        await wait_for(lambda: world.relay.cursor.last is not None, timeout=10)
        yield world


class TestNotices:
    def test_ranges_round_trip(self) -> None:
        (payload,) = log_notices(OTHER, [7, 3, 4, 5, 9, 10])
        assert payload == f"{OTHER}:3-5,7,9-10"
        assert LogNotice.parse(payload) == LogNotice(OTHER, ((3, 5), (7, 7), (9, 10)))

    def test_a_large_batch_is_split_far_under_the_limit(self) -> None:
        payloads = log_notices(OTHER, range(1, 20_000, 2))
        assert len(payloads) > 1
        assert all(len(p.encode()) <= 4000 for p in payloads)
        ranges = [r for p in payloads for r in LogNotice.parse(p).ranges]
        ids = {i for low, high in ranges for i in range(low, high + 1)}
        assert ids == set(range(1, 20_000, 2))

    @pytest.mark.parametrize("payload", ["", "x:1", f"{OTHER}:", f"{OTHER}:5-3", f"{OTHER}:a"])
    def test_a_bad_payload_is_refused(self, payload: str) -> None:
        with pytest.raises(ValueError):
            LogNotice.parse(payload)


class TestLogRelay:
    async def test_another_process_logs_reach_the_subscribed_sockets_once(
        self, world: World
    ) -> None:
        alice, bob = await user(world.sessionmaker), await user(world.sessionmaker)
        session, elsewhere = uuid.uuid4(), uuid.uuid4()
        one, two, bobs = SocketOutbox(), SocketOutbox(), SocketOutbox()
        await world.fanout.subscribe(alice, session, one)
        await world.fanout.subscribe(alice, session, two)
        # Bob names Alice's session: he must not see her logs.
        await world.fanout.subscribe(bob, session, bobs)
        reads = world.relay.reads
        await world.store(OTHER, alice, session, "a1", "a2")
        await world.store(OTHER, alice, elsewhere, "not subscribed")
        # This process's own: its registry pushed them already, the relay skips them.
        await world.store(ME, alice, session, "mine")
        await world.store(OTHER, alice, session, "a3")
        assert await messages(one, 3) == ["a1", "a2", "a3"]
        assert await messages(two, 3) == ["a1", "a2", "a3"]
        assert await messages(bobs, 0) == []
        # One read per notice of another process at most, whatever the sockets.
        assert world.relay.reads - reads <= 3
        assert world.relay.own_notices >= 1

    async def test_without_subscribers_nothing_is_read(self, world: World) -> None:
        alice = await user(world.sessionmaker)
        heard = world.relay.notices
        await world.store(OTHER, alice, uuid.uuid4(), "nobody listens")
        await wait_for(lambda: world.relay.notices > heard, timeout=5)
        await anyio.wait_all_tasks_blocked()
        assert world.relay.reads == 0

    async def test_a_cut_listener_reads_what_it_missed_within_its_bounds(
        self, world: World
    ) -> None:
        alice = await user(world.sessionmaker)
        session = uuid.uuid4()
        socket = SocketOutbox()
        await world.fanout.subscribe(alice, session, socket)
        await world.store(OTHER, alice, session, "before")
        assert await messages(socket, 1) == ["before"]
        relay = world.relay
        relay.first_pause = relay.longest_pause = 1.0
        connects = relay.connects
        await cut_listener(world.sessionmaker)
        # Stored while nobody here listens: four logs, of which the newest three (the
        # bound) are read back on reconnect.
        await world.store(OTHER, alice, session, "m1", "m2")
        await world.store(OTHER, alice, session, "m3", "m4")
        await wait_for(lambda: relay.connects > connects, timeout=10)
        assert await messages(socket, 3) == ["m2", "m3", "m4"]
        assert relay.gap_reads == 1
        # Live again.
        await world.store(OTHER, alice, session, "after")
        assert await messages(socket, 1) == ["after"]
