"""One turn at a time per conversation across processes, seen from one chat actor: a
turn that finds another process's turn running waits, queued, without asking the
master, and runs once that one ends; a running turn this process left behind (its end
never stored) does not hold the conversation."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio
import pytest
from sqlalchemy import text

from actors.chat import (
    CANCELLED,
    INTERRUPTED,
    ChatDeps,
    ChatInput,
    ChatsClient,
    chat_supervisor_spec,
    stored_error,
)
from actors.fanout import LogFanoutClient, log_fanout_spec
from persistence import TurnHistory
from runtime import open_actor_system
from tests.actors.janitor.rows import add_conversation, add_turn

from .conftest import CIPHER, FakeMaster, Running, World, next_frame

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]

ME, OTHER = uuid.uuid4(), uuid.uuid4()
MESSAGE = ChatInput("hello", "gpt", "openai")


@pytest.fixture(name="running")
async def _running(sessionmaker: Sessions, master: FakeMaster) -> AsyncIterator[Running]:
    deps = ChatDeps(sessionmaker, master, CIPHER, master_timeout=5.0, process_id=ME)
    async with (
        master.serving(),
        open_actor_system(chat_supervisor_spec(deps), log_fanout_spec()) as system,
    ):
        fanout = LogFanoutClient(system)
        yield Running(system, ChatsClient(system, fanout=fanout), fanout)


async def status(sessionmaker: Sessions, request_id: uuid.UUID) -> str | None:
    async with sessionmaker() as session:
        found = await session.scalar(
            text("SELECT status FROM chatturns WHERE request_id = :r"), {"r": request_id}
        )
    return None if found is None else str(found)


async def queued(sessionmaker: Sessions, session_id: uuid.UUID) -> uuid.UUID:
    """The conversation's queued turn, once the chat actor has stored it (within its
    flush delay)."""
    with anyio.fail_after(10):
        while True:
            async with sessionmaker() as session:
                found = await session.scalar(
                    text(
                        "SELECT request_id FROM chatturns"
                        " WHERE session_id = :s AND status = 'queued'"
                    ),
                    {"s": session_id},
                )
            if found is not None:
                return uuid.UUID(str(found))
            await anyio.sleep(0.1)


async def end(sessionmaker: Sessions, request_id: uuid.UUID) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            text(
                "UPDATE chatturns SET status = 'answered', finished_at = now() AT TIME ZONE"
                " 'utc' WHERE request_id = :r"
            ),
            {"r": request_id},
        )


async def held_by(
    world: World, sessionmaker: Sessions, process: uuid.UUID
) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A user's conversation whose running turn is ``process``'s: (owner, conversation,
    that turn)."""
    owner = await world.user()
    session_id = await add_conversation(sessionmaker, owner.id)
    running = await add_turn(sessionmaker, session_id, owner.id, "running", process_id=process)
    return owner.id, session_id, running


async def test_a_turn_waits_for_another_process_turn_then_runs(
    running: Running, world: World, master: FakeMaster, sessionmaker: Sessions
) -> None:
    owner, session_id, theirs = await held_by(world, sessionmaker, OTHER)
    async with running.chats.open_session(owner, session_id, events=True) as chat:
        await chat.post(MESSAGE)
        # Queued behind the other process's turn: its row says so, and the master has
        # not been asked. Its events wait too (they will follow the other's).
        mine = await queued(sessionmaker, session_id)
        assert master.calls == []
        await end(sessionmaker, theirs)
        frames = [await next_frame(chat, within=10)]
        while frames[-1]["type"] != "agent_response":
            frames.append(await next_frame(chat, within=10))
    kinds = [f.get("kind") for f in frames if f.get("type") == "turn_event"]
    assert kinds == ["accepted", "started", "master_invoked", "answered"]
    assert frames[-1]["response"]["response"]["response"] == "hi"
    assert len(master.calls) == 1
    assert await status(sessionmaker, mine) == "answered"


async def test_a_waiting_turn_can_be_cancelled(
    running: Running, world: World, master: FakeMaster, sessionmaker: Sessions
) -> None:
    owner, session_id, theirs = await held_by(world, sessionmaker, OTHER)
    async with running.chats.open_session(owner, session_id) as chat:
        await chat.post(MESSAGE)
        request_id = await queued(sessionmaker, session_id)
        assert await running.chats.cancel_turn(owner, session_id, request_id)
        frame = await next_frame(chat, within=10)
    assert frame["response"]["response"]["response"] == CANCELLED
    assert master.calls == []
    assert await status(sessionmaker, theirs) == "running"  # not ours to end


async def test_a_running_turn_this_process_left_behind_does_not_hold_the_conversation(
    running: Running, world: World, master: FakeMaster, sessionmaker: Sessions
) -> None:
    owner, session_id, stale = await held_by(world, sessionmaker, ME)
    async with running.chats.open_session(owner, session_id) as chat:
        await chat.post(MESSAGE)
        frame = await next_frame(chat, within=10)
    assert frame["response"]["response"]["response"] == "hi"
    assert await status(sessionmaker, stale) == "interrupted"


async def test_a_waiting_turn_ended_by_a_peer_passes_its_stored_reply_on(
    running: Running, world: World, master: FakeMaster, sessionmaker: Sessions
) -> None:
    """A peer took this process for gone (its database was cut for long) and ended its
    queued turn as interrupted: the sockets here get that reply, once, and the turn
    does not run."""
    owner, session_id, _ = await held_by(world, sessionmaker, OTHER)
    async with running.chats.open_session(owner, session_id) as chat:
        await chat.post(MESSAGE)
        mine = await queued(sessionmaker, session_id)
        finished = await TurnHistory(sessionmaker).finish_turns_of(
            [ME], reply_for=stored_error(INTERRUPTED)
        )
        assert finished == 1
        frame = await next_frame(chat, within=10)
        assert frame["response"]["request_id"] == str(mine)
        assert frame["response"]["response"]["response"] == INTERRUPTED
        with anyio.move_on_after(0.5):
            extra = await next_frame(chat, within=5)
            raise AssertionError(f"a second answer: {extra}")
    assert master.calls == []
    assert await status(sessionmaker, mine) == "interrupted"
