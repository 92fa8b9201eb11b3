"""Heartbeat: processes on one database see each other, a clean stop leaves at once, a
process that dies is found gone and its open turns answered once, outages are waited out."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import text

from actors.chat import INTERRUPTED, agent_response_body, error_reply, stored_content
from actors.cluster import Heartbeat, HeartbeatClient, heartbeat_spec, process_identity
from persistence import ProcessIdentity, create_engine, create_sessionmaker
from runtime import ActorState, ActorSystem, open_actor_system
from runtime.testing import wait_for
from tests.actors.janitor.rows import add_conversation, add_turn, add_user, count
from tests.faults.proxy import TcpProxy, open_database_proxy

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]

# Short, and still long enough that a loaded test machine never stalls a live
# process's beats past the timeout.
INTERVAL = 0.1
TIMEOUT = 1.5


def interrupted_reply(request_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
    """The composition root's ``reply_for``: the chat actor's interrupted answer."""
    reply = error_reply(INTERRUPTED)
    body = agent_response_body(reply, request_id=request_id, session_id=session_id, files=())
    return stored_content(reply), body


@asynccontextmanager
async def _process(
    sessionmaker: Sessions,
    *,
    http_url: str | None = None,
    interval: float = INTERVAL,
    timeout: float = TIMEOUT,  # noqa: ASYNC109 - the peer timeout, not a deadline
    **options: Any,
) -> AsyncIterator[tuple[ActorSystem, HeartbeatClient, ProcessIdentity]]:
    """A 'process': its own actor system with a heartbeat of its own identity."""
    me = process_identity(uuid.uuid4(), http_url=http_url, owns_router=http_url is not None)
    spec = heartbeat_spec(
        sessionmaker,
        me,
        reply_for=interrupted_reply,
        interval=interval,
        timeout=timeout,
        **options,
    )
    async with open_actor_system(spec) as system:
        yield system, HeartbeatClient(system.ref_of("heartbeat")), me


def _instance(system: ActorSystem) -> Heartbeat:
    instance = system.ref_of("heartbeat")._cell.instance
    assert isinstance(instance, Heartbeat)
    return instance


@asynccontextmanager
async def _through_proxy(database_url: str) -> AsyncIterator[tuple[TcpProxy, Sessions]]:
    async with open_database_proxy(database_url) as (proxy, through):
        engine = create_engine(through, pool_size=2, max_overflow=0, pool_timeout=2)
        try:
            yield proxy, create_sessionmaker(engine)
        finally:
            await engine.dispose()


async def _rows(sessionmaker: Sessions) -> set[uuid.UUID]:
    async with sessionmaker() as session:
        return set(await session.scalars(text("SELECT id FROM backendprocesses")))


class TestPeers:
    async def test_two_processes_see_each_other(self, sessionmaker: Sessions) -> None:
        async with (
            _process(sessionmaker, http_url="http://a:8000") as (_, a, a_id),
            _process(sessionmaker, interval=3600, timeout=9000) as (_, b, b_id),
        ):
            await a.beat()
            await b.beat()
            seen_by_a, seen_by_b = await a.status(), await b.status()
            assert [peer.id for peer in seen_by_a.peers] == [b_id.id]
            assert [peer.id for peer in seen_by_b.peers] == [a_id.id]
            (peer,) = seen_by_b.peers
            assert peer.http_url == "http://a:8000" and peer.owns_router
            assert 0 <= peer.last_seen_seconds_ago < 1
            shown = seen_by_a.to_dict()
            assert shown["process"]["id"] == str(a_id.id)
            assert shown["process"]["owns_router"] is True
            assert shown["peers"][0]["id"] == str(b_id.id)
            json.dumps(shown)

    async def test_the_row_is_written_before_the_start_returns(
        self, sessionmaker: Sessions
    ) -> None:
        async with _process(sessionmaker, interval=3600, timeout=9000) as (system, _, me):
            assert await _rows(sessionmaker) == {me.id}
            assert _instance(system).status().started_at is not None

    async def test_a_clean_stop_leaves_at_once(self, sessionmaker: Sessions) -> None:
        async with _process(sessionmaker, interval=3600, timeout=9000) as (_, a, a_id):
            async with _process(sessionmaker) as (_, _b, b_id):
                await a.beat()
                assert [peer.id for peer in (await a.status()).peers] == [b_id.id]
            assert await _rows(sessionmaker) == {a_id.id}
            await a.beat()
            assert (await a.status()).peers == ()

    async def test_timeout_must_exceed_twice_the_interval(self, sessionmaker: Sessions) -> None:
        with pytest.raises(ValueError, match="twice"):
            Heartbeat(
                sessionmaker,
                ProcessIdentity(uuid.uuid4()),
                reply_for=interrupted_reply,
                interval=2,
                timeout=4,
            )


class TestDeadPeer:
    async def test_a_killed_process_is_gone_after_the_timeout_and_its_turns_answered_once(
        self, sessionmaker: Sessions, database_url: str
    ) -> None:
        user = await add_user(sessionmaker)
        chats = [await add_conversation(sessionmaker, user) for _ in range(3)]
        async with AsyncExitStack() as stack:
            proxy, cut_off = await stack.enter_async_context(_through_proxy(database_url))
            # The victim beats through the proxy; cutting the line stops its beats as
            # a kill would, without its clean stop.
            victim_system, _, victim = await stack.enter_async_context(
                _process(cut_off, first_pause=0.01, longest_pause=0.05, leave_deadline=0.2)
            )
            survivors = [await stack.enter_async_context(_process(sessionmaker)) for _ in range(2)]
            running = [
                await add_turn(sessionmaker, chat, user, "running", process_id=victim.id)
                for chat in chats
            ]
            queued = await add_turn(sessionmaker, chats[0], user, "queued", process_id=victim.id)
            answered = await add_turn(
                sessionmaker, chats[1], user, "answered", process_id=victim.id
            )
            for _, client, _ in survivors:
                await client.beat()
                assert victim.id in {peer.id for peer in (await client.status()).peers}
            proxy.cut()
            instances = [_instance(system) for system, _, _ in survivors]
            await wait_for(
                lambda: sum(i.status().turns_interrupted for i in instances) >= 4, timeout=10
            )
            await wait_for(
                lambda: all(
                    victim.id not in {peer.id for peer in i.status().peers} for i in instances
                ),
                timeout=10,
            )
            assert sum(i.status().turns_interrupted for i in instances) == 4
            for _, client, _ in survivors:
                await client.beat()
                assert victim.id not in {peer.id for peer in (await client.status()).peers}
            assert victim.id not in await _rows(sessionmaker)
            # Each turn finished once: one final event, one stored reply, undelivered.
            for request_id in [*running, queued]:
                assert (
                    await count(
                        sessionmaker,
                        "SELECT count(*) FROM chatturns WHERE request_id = :r"
                        " AND status = 'interrupted' AND finished_at IS NOT NULL"
                        " AND NOT delivered",
                        r=request_id,
                    )
                    == 1
                )
                async with sessionmaker() as session:
                    events = (
                        await session.execute(
                            text("SELECT kind, data FROM chatturnevents WHERE request_id = :r"),
                            {"r": request_id},
                        )
                    ).all()
                    content = await session.scalar(
                        text("SELECT content FROM chatmessages WHERE request_id = :r"),
                        {"r": request_id},
                    )
                ((kind, data),) = events
                assert kind == "interrupted"
                frame = data["reply"]
                assert frame["type"] == "agent_response"
                assert frame["response"]["request_id"] == str(request_id)
                assert frame["response"]["response"]["response"] == INTERRUPTED
                assert json.loads(content)["response"] == INTERRUPTED
            assert (
                await count(
                    sessionmaker,
                    "SELECT count(*) FROM chatturns WHERE request_id = :r AND status = 'answered'",
                    r=answered,
                )
                == 1
            )
            # The victim only waits for its database: no crash, no restart.
            (child,) = victim_system.snapshot().children
            assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
            assert _instance(victim_system).status().waiting_for_database

    async def test_the_first_beat_answers_turns_of_no_live_process(
        self, sessionmaker: Sessions
    ) -> None:
        user = await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, user)
        null = await add_turn(sessionmaker, chat, user, "running")
        rowless = await add_turn(sessionmaker, chat, user, "queued", process_id=uuid.uuid4())
        async with _process(sessionmaker, interval=3600, timeout=9000) as (system, _, me):
            # Finished by the start itself, before anything started after it.
            assert _instance(system).status().turns_interrupted == 2
            mine = await add_turn(sessionmaker, chat, user, "running", process_id=me.id)
            await HeartbeatClient(system.ref_of("heartbeat")).beat()
        for request_id in (null, rowless):
            assert (
                await count(
                    sessionmaker,
                    "SELECT count(*) FROM chatturns WHERE request_id = :r"
                    " AND status = 'interrupted'",
                    r=request_id,
                )
                == 1
            )
        assert (
            await count(
                sessionmaker,
                "SELECT count(*) FROM chatturns WHERE request_id = :r AND status = 'running'",
                r=mine,
            )
            == 1
        )


class TestDatabaseOutage:
    async def test_waits_out_a_cut_database_without_a_restart(self, database_url: str) -> None:
        async with _through_proxy(database_url) as (proxy, sessionmaker):
            async with _process(
                sessionmaker, first_pause=0.01, longest_pause=0.2, timeout=TIMEOUT
            ) as (system, client, me):
                instance = _instance(system)
                proxy.cut()
                await wait_for(lambda: instance.status().database_waits >= 3, timeout=10)
                assert instance.status().waiting_for_database
                (child,) = system.snapshot().children
                assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
                beats = instance.status().beats
                proxy.restore()
                await wait_for(lambda: instance.status().beats > beats, timeout=10)
                await client.beat()
                status = await client.status()
                assert not status.waiting_for_database
                (child,) = system.snapshot().children
                assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
                assert not system.failed
            # A clean stop after the outage still leaves.
            assert me.id not in await _rows(sessionmaker)

    async def test_starts_while_the_database_is_cut(self, database_url: str) -> None:
        async with _through_proxy(database_url) as (proxy, sessionmaker):
            proxy.cut()
            async with _process(sessionmaker, first_pause=0.01, longest_pause=0.1) as (
                system,
                _,
                me,
            ):
                instance = _instance(system)
                assert instance.status().started_at is None
                await wait_for(lambda: instance.status().database_waits >= 2, timeout=10)
                proxy.restore()
                await wait_for(lambda: instance.status().started_at is not None, timeout=10)
                assert me.id in await _rows(sessionmaker)
                (child,) = system.snapshot().children
                assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
