"""ProcessTable (rows and beats of server processes) and TurnHistory.finish_turns_of."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import text

from persistence import ProcessIdentity, ProcessTable, TurnHistory, TurnStatus
from tests.actors.janitor.rows import add_conversation, add_turn, add_user, count

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]

TIMEOUT = 10.0


def _reply(request_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, Mapping[str, Any]]:
    return "interrupted", {"request_id": str(request_id), "session_id": str(session_id)}


async def _silence(sessionmaker: Sessions, process_id: uuid.UUID, seconds: float) -> None:
    """Move the process's last beat ``seconds`` into the past."""
    async with sessionmaker.begin() as session:
        await session.execute(
            text(
                "UPDATE backendprocesses SET last_seen = last_seen - make_interval(secs => :s)"
                " WHERE id = :id"
            ),
            {"s": seconds, "id": process_id},
        )


async def _status(sessionmaker: Sessions, request_id: uuid.UUID) -> str:
    async with sessionmaker() as session:
        found = await session.scalar(
            text("SELECT status FROM chatturns WHERE request_id = :r"), {"r": request_id}
        )
    return str(found)


class TestProcessTable:
    async def test_beat_inserts_then_moves_last_seen_and_keeps_the_start(
        self, sessionmaker: Sessions
    ) -> None:
        table = ProcessTable(sessionmaker)
        me = ProcessIdentity(uuid.uuid4(), "http://a:8000", True, 42, "host-a")
        first = await table.beat(me)
        assert first.inserted
        second = await table.beat(me, started_at=first.started_at)
        assert not second.inserted
        assert second.started_at == first.started_at
        assert second.last_seen >= first.last_seen
        (row,) = await table.peers(TIMEOUT)
        assert (row.id, row.http_url, row.owns_router, row.pid, row.hostname) == (
            me.id,
            "http://a:8000",
            True,
            42,
            "host-a",
        )
        assert 0 <= row.seconds_ago < TIMEOUT

    async def test_a_forgotten_row_comes_back_with_its_start(self, sessionmaker: Sessions) -> None:
        table = ProcessTable(sessionmaker)
        me = ProcessIdentity(uuid.uuid4())
        first = await table.beat(me)
        assert await table.forget([me.id]) == 1
        again = await table.beat(me, started_at=first.started_at)
        assert again.inserted and again.started_at == first.started_at

    async def test_peers_and_gone_by_the_database_clock(self, sessionmaker: Sessions) -> None:
        table = ProcessTable(sessionmaker)
        me, live, dead = (ProcessIdentity(uuid.uuid4()) for _ in range(3))
        for process in (me, live, dead):
            await table.beat(process)
        await _silence(sessionmaker, dead.id, TIMEOUT + 1)
        assert [peer.id for peer in await table.peers(TIMEOUT, exclude=me.id)] == [live.id]
        assert await table.gone(TIMEOUT) == [dead.id]
        assert await table.forget(await table.gone(TIMEOUT), older_than=TIMEOUT) == 1
        assert await table.gone(TIMEOUT) == []
        assert {peer.id for peer in await table.peers(TIMEOUT)} == {me.id, live.id}

    async def test_forget_keeps_a_row_that_beat_again(self, sessionmaker: Sessions) -> None:
        table = ProcessTable(sessionmaker)
        late = ProcessIdentity(uuid.uuid4())
        await table.beat(late)
        await _silence(sessionmaker, late.id, TIMEOUT + 1)
        gone = await table.gone(TIMEOUT)
        await table.beat(late)
        assert await table.forget(gone, older_than=TIMEOUT) == 0
        assert [peer.id for peer in await table.peers(TIMEOUT)] == [late.id]
        assert await table.forget([]) == 0

    async def test_leave_deletes_the_own_row(self, sessionmaker: Sessions) -> None:
        table = ProcessTable(sessionmaker)
        me = ProcessIdentity(uuid.uuid4())
        await table.beat(me)
        assert await table.leave(me.id)
        assert not await table.leave(me.id)
        assert await table.peers(TIMEOUT) == []


class TestFinishTurnsOf:
    async def test_finishes_the_open_turns_of_the_processes_listed(
        self, sessionmaker: Sessions
    ) -> None:
        table = ProcessTable(sessionmaker)
        dead, live = ProcessIdentity(uuid.uuid4()), ProcessIdentity(uuid.uuid4())
        await table.beat(dead)
        await table.beat(live)
        user = await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, user)
        running = await add_turn(sessionmaker, chat, user, "running", process_id=dead.id)
        queued = await add_turn(sessionmaker, chat, user, "queued", process_id=dead.id)
        answered = await add_turn(sessionmaker, chat, user, "answered", process_id=dead.id)
        # One running turn per conversation.
        chat = await add_conversation(sessionmaker, user)
        other = await add_turn(sessionmaker, chat, user, "running", process_id=live.id)
        chat = await add_conversation(sessionmaker, user)
        unowned = await add_turn(sessionmaker, chat, user, "running")
        history = TurnHistory(sessionmaker)
        finished = await history.finish_turns_of(
            [dead.id], status=TurnStatus.INTERRUPTED, reply_for=_reply
        )
        assert finished == 2
        assert await _status(sessionmaker, running) == "interrupted"
        assert await _status(sessionmaker, queued) == "interrupted"
        assert await _status(sessionmaker, answered) == "answered"
        assert await _status(sessionmaker, other) == "running"
        assert await _status(sessionmaker, unowned) == "running"
        events = await history.events(user, running)
        assert [(e.kind, e.data["reply"]["request_id"]) for e in events] == [
            ("interrupted", str(running))
        ]
        stored = await count(
            sessionmaker,
            "SELECT count(*) FROM chatmessages WHERE request_id = :r AND content = 'interrupted'",
            r=running,
        )
        assert stored == 1
        assert await history.finish_turns_of([dead.id], reply_for=_reply) == 0
        assert await history.finish_turns_of([], reply_for=_reply) == 0

    async def test_unowned_turns_only_when_asked(self, sessionmaker: Sessions) -> None:
        table = ProcessTable(sessionmaker)
        live, stale = ProcessIdentity(uuid.uuid4()), ProcessIdentity(uuid.uuid4())
        await table.beat(live)
        await table.beat(stale)
        await _silence(sessionmaker, stale.id, TIMEOUT + 1)
        user = await add_user(sessionmaker)

        async def turn(status: str, process_id: uuid.UUID | None = None) -> uuid.UUID:
            chat = await add_conversation(sessionmaker, user)  # one running per conversation
            return await add_turn(sessionmaker, chat, user, status, process_id=process_id)

        null = await turn("running")
        rowless = await turn("running", uuid.uuid4())
        of_stale = await turn("queued", stale.id)
        of_live = await turn("running", live.id)
        history = TurnHistory(sessionmaker)
        assert await history.finish_turns_of([], reply_for=_reply) == 0
        finished = await history.finish_turns_of([], reply_for=_reply, unowned_after=TIMEOUT)
        assert finished == 3
        for request_id in (null, rowless, of_stale):
            assert await _status(sessionmaker, request_id) == "interrupted"
        assert await _status(sessionmaker, of_live) == "running"

    async def test_several_finishers_at_once_finish_each_turn_once(
        self, sessionmaker: Sessions
    ) -> None:
        dead = uuid.uuid4()
        user = await add_user(sessionmaker)
        turns = []
        for _ in range(4):
            chat = await add_conversation(sessionmaker, user)
            for status in ["running"] + ["queued"] * 59:
                turns.append(await add_turn(sessionmaker, chat, user, status, process_id=dead))
        history = TurnHistory(sessionmaker)
        counts: list[int] = []

        async def finish() -> None:
            counts.append(await history.finish_turns_of([dead], reply_for=_reply))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(finish)
        assert sum(counts) == len(turns)
        assert await count(
            sessionmaker, "SELECT count(*) FROM chatturnevents WHERE kind = 'interrupted'"
        ) == len(turns)
        assert (
            await count(sessionmaker, "SELECT count(*) FROM chatturns WHERE status = 'running'")
            == 0
        )
