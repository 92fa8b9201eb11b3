"""TurnRelay: the replies of turns other processes ended reach this process's sockets
once; those that ended while its listener was down are read back on reconnecting."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from sqlalchemy import text

from actors.chat import Room, Rooms, TurnRelay, turn_relay_spec
from actors.fanout import SocketOutbox
from runtime import ActorSystem, open_actor_system
from runtime.testing import wait_for
from tests.actors.janitor.rows import add_conversation, add_event, add_turn, add_user

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]

ME, OTHER = uuid.uuid4(), uuid.uuid4()


class World:
    def __init__(self, system: ActorSystem, sessionmaker: Sessions, rooms: Rooms) -> None:
        self.system = system
        self.sessionmaker = sessionmaker
        self.rooms = rooms

    @property
    def relay(self) -> TurnRelay:
        instance = self.system.ref_of("turnrelay")._cell.instance
        assert isinstance(instance, TurnRelay)
        return instance

    async def socket(self, user: uuid.UUID, session: uuid.UUID) -> SocketOutbox:
        outbox = SocketOutbox()
        self.rooms.setdefault((user, session), Room).add(outbox)
        return outbox

    async def ended_elsewhere(self, user: uuid.UUID, session: uuid.UUID, text: str) -> uuid.UUID:
        """A turn another process answered: its final event with the reply, then its row
        (whose final status notifies ``genai_turns``)."""
        request_id = uuid.uuid4()
        reply = {
            "type": "agent_response",
            "response": {"request_id": str(request_id), "text": text},
        }
        await add_event(self.sessionmaker, session, request_id, user, "answered", {"reply": reply})
        async with self.sessionmaker.begin() as db:
            await db.execute(
                sql(
                    "INSERT INTO chatturns (request_id, session_id, user_id, status, created_at,"
                    " finished_at, process_id) VALUES (:r, :s, :u, 'answered', now(), now()"
                    " AT TIME ZONE 'utc', :p)"
                ),
                {"r": request_id, "s": session, "u": user, "p": OTHER},
            )
        return request_id


def sql(statement: str) -> Any:
    return text(statement)


async def replies(outbox: SocketOutbox, count: int, within: float = 10.0) -> list[str]:
    """The texts of the next ``count`` replies, then of whatever comes within 0.3 s."""
    got: list[str] = []
    with anyio.fail_after(within):
        while len(got) < count:
            got.append(json.loads(await outbox.receive())["response"]["text"])
    with anyio.move_on_after(0.3):
        while True:
            got.append(json.loads(await outbox.receive())["response"]["text"])
    return got


async def cut_listener(sessionmaker: Sessions) -> None:
    async with sessionmaker.begin() as db:
        await db.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN %' AND datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
        )


@pytest.fixture(name="world")
async def _world(database_url: str, sessionmaker: Sessions) -> AsyncIterator[World]:
    rooms = Rooms()
    async with open_actor_system(turn_relay_spec(database_url, sessionmaker, ME, rooms)) as system:
        world = World(system, sessionmaker, rooms)
        await wait_for(lambda: world.relay.connects > 0, timeout=10)
        yield world
    for key in list(rooms._rooms):
        for outbox in rooms._rooms[key].live():
            outbox.discard()


async def test_another_process_reply_reaches_the_socket_once(world: World) -> None:
    alice = await add_user(world.sessionmaker)
    session = await add_conversation(world.sessionmaker, alice)
    socket = await world.socket(alice, session)
    await world.ended_elsewhere(alice, session, "one")
    assert await replies(socket, 1) == ["one"]


async def test_turns_ended_while_the_listener_was_down_are_read_back(world: World) -> None:
    alice = await add_user(world.sessionmaker)
    session = await add_conversation(world.sessionmaker, alice)
    quiet = await add_conversation(world.sessionmaker, alice)  # no socket here
    socket = await world.socket(alice, session)
    await world.ended_elsewhere(alice, session, "before")
    assert await replies(socket, 1) == ["before"]
    relay = world.relay
    relay.first_pause = relay.longest_pause = 1.0
    connects = relay.connects
    await cut_listener(world.sessionmaker)
    await wait_for(lambda: relay._lost_at is not None, timeout=10)
    # Ended while nobody here listens (and one of this process's own, and one of a
    # conversation without a socket here: neither is sent).
    await world.ended_elsewhere(alice, session, "missed 1")
    await world.ended_elsewhere(alice, session, "missed 2")
    await add_turn(world.sessionmaker, session, alice, "answered", process_id=ME)
    await world.ended_elsewhere(alice, quiet, "elsewhere")
    await wait_for(lambda: relay.connects > connects, timeout=15)
    # Read back once; "before" (ended before the cut, inside the margin) is not sent again.
    assert await replies(socket, 2) == ["missed 1", "missed 2"]
    assert relay.gap_reads == 1
    # Live again.
    await world.ended_elsewhere(alice, session, "after")
    assert await replies(socket, 1) == ["after"]


async def test_a_burst_of_turns_sends_each_reply_once(world: World) -> None:
    """A read for one notice finds the next turn's reply undelivered too: it is not sent
    again when that turn's own notice is handled."""
    alice = await add_user(world.sessionmaker)
    session = await add_conversation(world.sessionmaker, alice)
    socket = await world.socket(alice, session)
    for name in ("a", "b", "c"):
        await world.ended_elsewhere(alice, session, name)
    assert sorted(await replies(socket, 3)) == ["a", "b", "c"]
