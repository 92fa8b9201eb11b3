"""TurnHistory: owner-scoped reads of turns and events, orphans finished, old rows deleted."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from persistence import TurnHistory, TurnStatus, utcnow
from tests.actors.janitor.rows import add_conversation, add_event, add_turn, add_user, count

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]


def reply_for(request_id: uuid.UUID, session_id: uuid.UUID) -> tuple[str, Mapping[str, Any]]:
    response = {"response": "Turn interrupted", "agents_trace": [], "is_success": False}
    frame = {
        "type": "agent_response",
        "response": {
            "execution_time": 0.0,
            "response": response,
            "request_id": str(request_id),
            "session_id": str(session_id),
            "files": [],
        },
    }
    return '{"response": "Turn interrupted"}', frame


@pytest.fixture(name="history")
def _history(sessionmaker: Sessions) -> TurnHistory:
    return TurnHistory(sessionmaker)


class TestReads:
    async def test_list_and_get_are_owner_scoped(
        self, sessionmaker: Sessions, history: TurnHistory
    ) -> None:
        alice, bob = await add_user(sessionmaker), await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, alice)
        start = utcnow() - timedelta(minutes=10)
        turns = [
            await add_turn(sessionmaker, chat, alice, status, created_at=start + timedelta(s))
            for s, status in enumerate(["answered", "failed", "running"])
        ]
        listed = await history.list_turns(alice, chat)
        assert [t.request_id for t in listed] == turns[::-1]
        assert [t.status for t in listed] == ["running", "failed", "answered"]
        assert [t.is_final for t in listed] == [False, True, True]
        page = await history.list_turns(alice, chat, limit=1, offset=1)
        assert [t.request_id for t in page] == [turns[1]]
        assert await history.list_turns(bob, chat) == []
        got = await history.get_turn(alice, turns[0])
        assert got is not None and got.session_id == chat and got.finished_at is not None
        assert await history.get_turn(bob, turns[0]) is None
        assert await history.get_turn(alice, uuid.uuid4()) is None

    async def test_events_of_a_turn_and_of_a_session(
        self, sessionmaker: Sessions, history: TurnHistory
    ) -> None:
        alice, bob = await add_user(sessionmaker), await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, alice)
        first = await add_turn(sessionmaker, chat, alice, "answered")
        second = await add_turn(sessionmaker, chat, alice, "running")
        for request_id, kind in [(first, "accepted"), (first, "started"), (second, "accepted")]:
            await add_event(sessionmaker, chat, request_id, alice, kind, {"k": kind})
        await add_event(sessionmaker, chat, first, alice, "answered", {"reply": {"x": 1}})
        events = await history.events(alice, first)
        assert [(e.seq, e.kind) for e in events] == [
            (1, "accepted"),
            (2, "started"),
            (4, "answered"),
        ]
        assert events[-1].data == {"reply": {"x": 1}}
        assert [e.seq for e in await history.events(alice, first, after_seq=2)] == [4]
        assert await history.events(bob, first) == []
        replay = await history.session_events(alice, chat, after_seq=1, limit=2)
        assert [(e.seq, e.request_id) for e in replay] == [(2, first), (3, second)]
        assert [e.seq for e in await history.session_events(alice, chat, 3)] == [4]
        assert await history.session_events(bob, chat, 0) == []


class TestDelivery:
    async def test_undelivered_replies_then_marked(
        self, sessionmaker: Sessions, history: TurnHistory
    ) -> None:
        alice, bob = await add_user(sessionmaker), await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, alice)
        lost = await add_turn(sessionmaker, chat, alice, "answered")
        sent = await add_turn(sessionmaker, chat, alice, "answered", delivered=True)
        running = await add_turn(sessionmaker, chat, alice, "running")
        for request_id in (lost, sent):
            await add_event(sessionmaker, chat, request_id, alice, "accepted", {})
            await add_event(sessionmaker, chat, request_id, alice, "answered", {"reply": {"n": 1}})
        await add_event(sessionmaker, chat, running, alice, "accepted", {})
        assert await history.undelivered(alice, chat) == [(lost, {"n": 1})]
        assert await history.undelivered(bob, chat) == []
        assert await history.mark_delivered([lost]) == 1
        assert await history.mark_delivered([lost]) == 0
        assert await history.mark_delivered([]) == 0
        assert await history.undelivered(alice, chat) == []


class TestOrphans:
    async def test_finishes_other_processes_turns_once(
        self, sessionmaker: Sessions, history: TurnHistory
    ) -> None:
        alice = await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, alice)
        mine, theirs = uuid.uuid4(), uuid.uuid4()
        done = await add_turn(sessionmaker, chat, alice, "answered", delivered=True)
        await add_event(sessionmaker, chat, done, alice, "answered", {"reply": {}})
        # This process's running turn, in a conversation of its own (one runs at a time).
        kept = await add_turn(
            sessionmaker,
            await add_conversation(sessionmaker, alice),
            alice,
            "running",
            process_id=mine,
        )
        orphans = [
            await add_turn(sessionmaker, chat, alice, "running", process_id=theirs),
            await add_turn(sessionmaker, chat, alice, "queued", process_id=theirs),
            await add_turn(sessionmaker, chat, alice, "queued"),
        ]
        finished = await history.finish_orphans(
            process_id=mine, status=TurnStatus.INTERRUPTED, reply_for=reply_for
        )
        assert finished == 3
        again = await history.finish_orphans(process_id=mine, reply_for=reply_for)
        assert again == 0
        for request_id in orphans:
            turn = await history.get_turn(alice, request_id)
            assert turn is not None and turn.status == "interrupted" and turn.finished_at
            (event,) = await history.events(alice, request_id)
            assert event.kind == "interrupted"
            assert event.data["reply"]["response"]["request_id"] == str(request_id)
        kept_turn = await history.get_turn(alice, kept)
        assert kept_turn is not None and kept_turn.status == "running"
        # Numbered after the conversation's last event, gap-free.
        seqs = [e.seq for e in await history.session_events(alice, chat, 0)]
        assert seqs == [1, 2, 3, 4]
        undelivered = await history.undelivered(alice, chat)
        assert sorted(r for r, _ in undelivered) == sorted(orphans)
        stored = await count(
            sessionmaker,
            "SELECT count(*) FROM chatmessages WHERE conversation_id = :c"
            " AND sender_type = 'master_agent' AND request_id = ANY(:ids)",
            c=chat,
            ids=orphans,
        )
        assert stored == 3
        # Without a process: every open turn, this process's too.
        assert await history.finish_orphans(process_id=None, reply_for=reply_for) == 1

    async def test_concurrent_finishers_finish_each_turn_once(
        self, sessionmaker: Sessions, history: TurnHistory
    ) -> None:
        alice = await add_user(sessionmaker)
        chats = [await add_conversation(sessionmaker, alice) for _ in range(3)]
        for index in range(150):
            status = "running" if index < 3 else "queued"  # one running per conversation
            await add_turn(sessionmaker, chats[index % 3], alice, status)
        counts: list[int] = []

        async def finish() -> None:
            counts.append(await history.finish_orphans(process_id=None, reply_for=reply_for))

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(finish)
        assert sum(counts) == 150
        for chat in chats:
            seqs = [e.seq for e in await history.session_events(alice, chat, 0, limit=500)]
            assert seqs == list(range(1, 51))
        messages = await count(sessionmaker, "SELECT count(*) FROM chatmessages")
        assert messages == 150

    async def test_finish_one(self, sessionmaker: Sessions, history: TurnHistory) -> None:
        alice = await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, alice)
        running = await add_turn(sessionmaker, chat, alice, "running")
        answered = await add_turn(sessionmaker, chat, alice, "answered")
        turn = await history.finish_orphan(running, TurnStatus.CANCELLED, reply_for)
        assert turn is not None and turn.status == "cancelled" and turn.finished_at
        (event,) = await history.events(alice, running)
        assert event.kind == "cancelled"
        again = await history.finish_orphan(running, TurnStatus.CANCELLED, reply_for)
        assert again == turn
        final = await history.finish_orphan(answered, TurnStatus.CANCELLED, reply_for)
        assert final is not None and final.status == "answered"
        assert await history.events(alice, answered) == []
        assert await history.finish_orphan(uuid.uuid4(), TurnStatus.CANCELLED, reply_for) is None
        with pytest.raises(ValueError):
            await history.finish_orphan(running, TurnStatus.RUNNING, reply_for)


class TestCleanUp:
    async def test_deletes_old_rows_in_batches_and_keeps_the_newest_event(
        self, sessionmaker: Sessions, history: TurnHistory
    ) -> None:
        alice = await add_user(sessionmaker)
        chat = await add_conversation(sessionmaker, alice)
        old = utcnow() - timedelta(days=10)
        old_turns = [
            await add_turn(sessionmaker, chat, alice, "answered", created_at=old) for _ in range(7)
        ]
        old_open = await add_turn(sessionmaker, chat, alice, "running", created_at=old)
        for request_id in old_turns:
            await add_event(sessionmaker, chat, request_id, alice, "answered", created_at=old)
        new_turn = await add_turn(sessionmaker, chat, alice, "answered")
        await add_event(sessionmaker, chat, new_turn, alice, "answered")
        # A quiet conversation keeps its newest event, so its numbers never restart.
        quiet = await add_conversation(sessionmaker, alice)
        quiet_turn = await add_turn(sessionmaker, quiet, alice, "answered", created_at=old)
        for _ in range(3):
            await add_event(sessionmaker, quiet, quiet_turn, alice, "agent_log", created_at=old)

        cleaned = await history.delete_older_than(utcnow() - timedelta(days=1), batch=2)
        assert (cleaned.events, cleaned.turns) == (7 + 2, 7 + 1)
        left = await count(sessionmaker, "SELECT count(*) FROM chatturns")
        assert left == 2  # the new turn and the old open one
        assert await history.get_turn(alice, old_open) is not None
        assert [e.seq for e in await history.session_events(alice, chat, 0)] == [8]
        assert [e.seq for e in await history.session_events(alice, quiet, 0)] == [3]
        again = await history.delete_older_than(utcnow() - timedelta(days=1))
        assert (again.events, again.turns) == (0, 0)
