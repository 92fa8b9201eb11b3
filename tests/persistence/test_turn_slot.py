"""One turn at a time per conversation, whichever process runs it (PostgreSQL decides).

Two stores with different process ids stand for two server processes on one database.
A turn's look-up that would make it the conversation's second running turn, or store
events under numbers another turn's events have, is refused whole: nothing of it is
stored (message, turn row, events), so the turn can wait and try again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
import pytest

from persistence import (
    ChatRepository,
    ChatTurnStore,
    TurnConflictError,
    TurnRowWrite,
    TurnWrites,
    User,
    utcnow,
)

from .conftest import add_user
from .test_turns import add_config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]


def starting(request_id: uuid.UUID, first_seq: int, *, status: str = "running") -> TurnWrites:
    """What a turn's look-up carries: its row and its ``accepted`` and ``started``."""
    now = utcnow()
    return TurnWrites(
        events=[
            (first_seq, request_id, "accepted", "{}", now),
            (first_seq + 1, request_id, "started", "{}", now),
        ],
        turns=[TurnRowWrite(request_id, status, now, now, None, False)],
    )


def finished(request_id: uuid.UUID, seq: int) -> TurnWrites:
    now: datetime = utcnow()
    return TurnWrites(
        events=[(seq, request_id, "answered", '{"reply": {}}', now)],
        turns=[TurnRowWrite(request_id, "answered", now, now, now, False)],
    )


@pytest.fixture(name="alice")
async def _alice(sessionmaker: Sessions) -> User:
    owner = await add_user(sessionmaker, "alice")
    await add_config(sessionmaker, owner, "openai", "gpt")
    return owner


@pytest.fixture(name="conversation")
async def _conversation(sessionmaker: Sessions, alice: User) -> uuid.UUID:
    session_id = uuid.uuid4()
    async with ChatTurnStore(sessionmaker).connect() as db:
        await db.create_conversation(session_id, owner_id=alice.id, title="t")
    return session_id


async def look_up(
    store: ChatTurnStore, session_id: uuid.UUID, owner: User, writes: TurnWrites, **store_it: str
) -> None:
    async with store.connect() as db:
        if store_it:
            request_id = writes.turns[0].request_id
            await db.look_up_and_store(
                session_id,
                owner_id=owner.id,
                llm_name="gpt",
                provider_name="openai",
                content=store_it["content"],
                request_id=request_id,
                api_key="key-openai",
                writes=writes,
            )
        else:
            await db.look_up(
                session_id, owner_id=owner.id, llm_name="gpt", provider_name="openai", writes=writes
            )


async def statuses(sessionmaker: Sessions, session_id: uuid.UUID) -> dict[uuid.UUID, str]:
    async with ChatTurnStore(sessionmaker).connect() as db:
        rows = await db._driver.fetch(
            "SELECT request_id, status FROM chatturns WHERE session_id = $1", session_id
        )
    return {row["request_id"]: row["status"] for row in rows}


async def event_numbers(sessionmaker: Sessions, session_id: uuid.UUID) -> list[tuple[int, str]]:
    async with ChatTurnStore(sessionmaker).connect() as db:
        rows = await db._driver.fetch(
            "SELECT seq, kind FROM chatturnevents WHERE session_id = $1 ORDER BY seq", session_id
        )
    return [(row["seq"], row["kind"]) for row in rows]


@pytest.fixture(name="processes")
def _processes() -> tuple[uuid.UUID, uuid.UUID]:
    return uuid.uuid4(), uuid.uuid4()


@pytest.fixture(name="stores")
def _stores(
    sessionmaker: Sessions, processes: tuple[uuid.UUID, uuid.UUID]
) -> tuple[ChatTurnStore, ChatTurnStore]:
    """The turn statements of two processes."""
    return tuple(ChatTurnStore(sessionmaker, process_id=p) for p in processes)  # type: ignore[return-value]


async def test_a_second_running_turn_is_refused_whole(
    sessionmaker: Sessions,
    alice: User,
    conversation: uuid.UUID,
    stores: tuple[ChatTurnStore, ChatTurnStore],
    processes: tuple[uuid.UUID, uuid.UUID],
) -> None:
    one, two = stores
    first, second = uuid.uuid4(), uuid.uuid4()
    await look_up(one, conversation, alice, starting(first, 1))

    with pytest.raises(TurnConflictError) as refused:
        await look_up(two, conversation, alice, starting(second, 3), content="second")
    assert refused.value.running
    # Nothing of the refused statement went in: no row, no event, no message.
    assert await statuses(sessionmaker, conversation) == {first: "running"}
    assert await event_numbers(sessionmaker, conversation) == [(1, "accepted"), (2, "started")]
    async with sessionmaker() as session:
        page = await ChatRepository(session).page_messages(conversation, owner_id=alice.id)
    assert page.items == []

    # The waiting turn cannot take the slot while the first runs; once it ends, it can.
    async with two.connect() as db:
        with pytest.raises(TurnConflictError):
            await db.claim(conversation, owner_id=alice.id, request_id=second)
        assert await db.running(conversation) == (first, processes[0])
    async with one.connect() as db:
        await db.store_writes(conversation, owner_id=alice.id, writes=finished(first, 3))
    async with two.connect() as db:
        assert await db.claim(conversation, owner_id=alice.id, request_id=second)
        assert await db.running(conversation) == (second, processes[1])
    assert await statuses(sessionmaker, conversation) == {first: "answered", second: "running"}


async def test_events_numbered_behind_another_process_are_refused_whole(
    sessionmaker: Sessions,
    alice: User,
    conversation: uuid.UUID,
    stores: tuple[ChatTurnStore, ChatTurnStore],
) -> None:
    one, two = stores
    first, second = uuid.uuid4(), uuid.uuid4()
    await look_up(one, conversation, alice, starting(first, 1))
    async with one.connect() as db:
        await db.store_writes(conversation, owner_id=alice.id, writes=finished(first, 3))

    # The second process still believes the conversation's last number is 1.
    with pytest.raises(TurnConflictError) as refused:
        await look_up(two, conversation, alice, starting(second, 2), content="late")
    assert not refused.value.running
    assert await statuses(sessionmaker, conversation) == {first: "answered"}
    assert [seq for seq, _ in await event_numbers(sessionmaker, conversation)] == [1, 2, 3]

    # Numbered after the stored events, it goes in.
    await look_up(two, conversation, alice, starting(second, 4), content="late")
    assert await statuses(sessionmaker, conversation) == {first: "answered", second: "running"}
    assert [seq for seq, _ in await event_numbers(sessionmaker, conversation)] == [1, 2, 3, 4, 5]


async def test_an_event_stored_again_by_its_own_turn_is_no_conflict(
    sessionmaker: Sessions, alice: User, conversation: uuid.UUID
) -> None:
    store = ChatTurnStore(sessionmaker, process_id=uuid.uuid4())
    first, second = uuid.uuid4(), uuid.uuid4()
    await look_up(store, conversation, alice, starting(first, 1))
    async with store.connect() as db:
        await db.store_writes(conversation, owner_id=alice.id, writes=finished(first, 3))
    # The final event amended (files), carried by the next turn's look-up.
    amended = finished(first, 3)
    writes = starting(second, 4)
    carried = TurnWrites(events=amended.events + writes.events, turns=writes.turns)
    await look_up(store, conversation, alice, carried)
    assert [seq for seq, _ in await event_numbers(sessionmaker, conversation)] == [1, 2, 3, 4, 5]


async def test_two_processes_starting_at_once_run_one_turn(
    sessionmaker: Sessions, alice: User, conversation: uuid.UUID
) -> None:
    """Both look-ups race; PostgreSQL lets one through whatever the timing."""
    for _ in range(10):
        base = len(await event_numbers(sessionmaker, conversation))
        outcomes: list[str] = []

        async def start(outcomes: list[str], base: int) -> None:
            store = ChatTurnStore(sessionmaker, process_id=uuid.uuid4())
            try:
                await look_up(store, conversation, alice, starting(uuid.uuid4(), base + 1))
            except TurnConflictError:
                outcomes.append("refused")
            else:
                outcomes.append("running")

        async with anyio.create_task_group() as tg:
            tg.start_soon(start, outcomes, base)
            tg.start_soon(start, outcomes, base)
        assert sorted(outcomes) == ["refused", "running"]
        found = await statuses(sessionmaker, conversation)
        (winner,) = [rid for rid, status in found.items() if status == "running"]
        async with ChatTurnStore(sessionmaker).connect() as db:
            await db.store_writes(
                conversation, owner_id=alice.id, writes=finished(winner, base + 3)
            )
    numbers = [seq for seq, _ in await event_numbers(sessionmaker, conversation)]
    assert numbers == list(range(1, 31))


async def test_a_turn_that_ended_elsewhere_is_not_claimed(
    sessionmaker: Sessions, alice: User, conversation: uuid.UUID
) -> None:
    store = ChatTurnStore(sessionmaker, process_id=uuid.uuid4())
    waiting = uuid.uuid4()
    async with store.connect() as db:
        await db.store_writes(
            conversation, owner_id=alice.id, writes=starting(waiting, 1, status="queued")
        )
        await db.store_writes(
            conversation,
            owner_id=alice.id,
            writes=TurnWrites(
                turns=[TurnRowWrite(waiting, "cancelled", utcnow(), None, utcnow(), False)]
            ),
        )
        assert not await db.claim(conversation, owner_id=alice.id, request_id=waiting)
        assert not await db.claim(uuid.uuid4(), owner_id=alice.id, request_id=uuid.uuid4())
