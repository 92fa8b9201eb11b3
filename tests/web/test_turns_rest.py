"""The chat-turn routes: lists, one turn with its events, cancel; owner-scoped."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from persistence import TurnHistory, utcnow
from tests.actors.janitor.rows import add_conversation, add_event, add_turn, count
from web.services import EXTENSION_KEY

from .conftest import LoggedIn, Users

if TYPE_CHECKING:
    from quart import Quart
    from quart.testing import QuartClient
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]

NOT_FOUND = {"detail": "Turn not found"}
FINISHED = {"detail": "Turn is already finished"}


def _timestamp(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 26 and value[10] == "T"


class FakeChats:
    """``ChatsClient.cancel_turn`` as the chat actors answer it."""

    def __init__(self, taken: bool) -> None:
        self.taken = taken
        self.calls: list[tuple[UUID, UUID, UUID]] = []

    async def cancel_turn(self, user_id: UUID, session_id: UUID, request_id: UUID) -> bool:
        self.calls.append((user_id, session_id, request_id))
        return self.taken


@pytest.fixture(name="alice")
async def _alice(users: Users) -> LoggedIn:
    return await users.login()


@pytest.fixture(name="bob")
async def _bob(users: Users) -> LoggedIn:
    return await users.login()


class TestList:
    async def test_newest_first_paged_and_owner_scoped(
        self, client: QuartClient, sessionmaker: Sessions, alice: LoggedIn, bob: LoggedIn
    ) -> None:
        chat = await add_conversation(sessionmaker, alice.id)
        start = utcnow() - timedelta(minutes=5)
        first = await add_turn(sessionmaker, chat, alice.id, "answered", created_at=start)
        second = await add_turn(
            sessionmaker, chat, alice.id, "queued", created_at=start + timedelta(seconds=1)
        )
        response = await client.get(
            "/api/chat/turns", query_string={"session_id": str(chat)}, headers=alice.headers
        )
        assert response.status_code == 200
        turns = (await response.get_json())["turns"]
        assert [t["request_id"] for t in turns] == [str(second), str(first)]
        assert set(turns[0]) == {
            "request_id",
            "session_id",
            "status",
            "created_at",
            "started_at",
            "finished_at",
        }
        assert turns[0]["status"] == "queued" and turns[0]["started_at"] is None
        assert turns[1]["status"] == "answered" and _timestamp(turns[1]["finished_at"])
        assert turns[1]["session_id"] == str(chat)
        paged = await client.get(
            "/api/chat/turns",
            query_string={"session_id": str(chat), "limit": "1", "offset": "1"},
            headers=alice.headers,
        )
        assert [t["request_id"] for t in (await paged.get_json())["turns"]] == [str(first)]
        foreign = await client.get(
            "/api/chat/turns", query_string={"session_id": str(chat)}, headers=bob.headers
        )
        assert (foreign.status_code, await foreign.get_json()) == (200, {"turns": []})

    @pytest.mark.parametrize(
        ("query", "loc", "kind"),
        [
            ({}, ["query", "session_id"], "missing"),
            ({"session_id": "nope"}, ["query", "session_id"], "uuid_parsing"),
            ({"session_id": "a\x00b"}, ["query", "session_id"], "value_error"),
            ({"session_id": str(uuid4()), "limit": "0"}, ["query", "limit"], "greater_than_equal"),
            ({"session_id": str(uuid4()), "limit": "501"}, ["query", "limit"], "less_than_equal"),
            (
                {"session_id": str(uuid4()), "offset": "-1"},
                ["query", "offset"],
                "greater_than_equal",
            ),
            ({"session_id": str(uuid4()), "offset": "1e999"}, ["query", "offset"], "int_parsing"),
        ],
    )
    async def test_bad_queries_are_422(
        self,
        client: QuartClient,
        alice: LoggedIn,
        query: dict[str, str],
        loc: list[str],
        kind: str,
    ) -> None:
        response = await client.get("/api/chat/turns", query_string=query, headers=alice.headers)
        assert response.status_code == 422
        errors = (await response.get_json())["detail"]
        assert [(e["loc"], e["type"]) for e in errors] == [(loc, kind)]

    async def test_needs_a_user(self, client: QuartClient) -> None:
        response = await client.get("/api/chat/turns", query_string={"session_id": str(uuid4())})
        assert response.status_code == 401


class TestOne:
    async def test_turn_with_its_events(
        self, client: QuartClient, sessionmaker: Sessions, alice: LoggedIn, bob: LoggedIn
    ) -> None:
        chat = await add_conversation(sessionmaker, alice.id)
        turn = await add_turn(sessionmaker, chat, alice.id, "answered")
        other = await add_turn(sessionmaker, chat, alice.id, "running")
        await add_event(sessionmaker, chat, turn, alice.id, "accepted", {"message": "hi"})
        await add_event(sessionmaker, chat, other, alice.id, "accepted", {"message": "yo"})
        await add_event(sessionmaker, chat, turn, alice.id, "answered", {"reply": {"a": 1}})
        response = await client.get(f"/api/chat/turns/{turn}", headers=alice.headers)
        assert response.status_code == 200
        body = await response.get_json()
        assert body["request_id"] == str(turn) and body["status"] == "answered"
        events = body["events"]
        assert [(e["seq"], e["kind"], e["data"]) for e in events] == [
            (1, "accepted", {"message": "hi"}),
            (3, "answered", {"reply": {"a": 1}}),
        ]
        assert set(events[0]) == {"seq", "request_id", "kind", "at", "data"}
        assert _timestamp(events[0]["at"]) and events[0]["request_id"] == str(turn)
        after = await client.get(
            f"/api/chat/turns/{turn}", query_string={"after_seq": "1"}, headers=alice.headers
        )
        assert [e["seq"] for e in (await after.get_json())["events"]] == [3]
        for who, request_id in [(bob, turn), (alice, uuid4())]:
            missing = await client.get(f"/api/chat/turns/{request_id}", headers=who.headers)
            assert (missing.status_code, await missing.get_json()) == (404, NOT_FOUND)

    @pytest.mark.parametrize(
        ("path", "query", "loc", "kind"),
        [
            ("/api/chat/turns/nope", {}, ["path", "request_id"], "uuid_parsing"),
            (
                "/api/chat/turns/{id}",
                {"after_seq": "-1"},
                ["query", "after_seq"],
                "greater_than_equal",
            ),
            ("/api/chat/turns/{id}", {"after_seq": "x"}, ["query", "after_seq"], "int_parsing"),
            (
                "/api/chat/turns/{id}",
                {"after_seq": str(2**63)},
                ["query", "after_seq"],
                "less_than_equal",
            ),
        ],
    )
    async def test_bad_ids_and_queries_are_422(
        self,
        client: QuartClient,
        alice: LoggedIn,
        path: str,
        query: dict[str, str],
        loc: list[str],
        kind: str,
    ) -> None:
        response = await client.get(
            path.format(id=uuid4()), query_string=query, headers=alice.headers
        )
        assert response.status_code == 422
        errors = (await response.get_json())["detail"]
        assert [(e["loc"], e["type"]) for e in errors] == [(loc, kind)]


class TestCancel:
    async def test_without_a_live_actor_the_turn_is_finished_here(
        self, app: Quart, client: QuartClient, sessionmaker: Sessions, alice: LoggedIn
    ) -> None:
        chats = FakeChats(taken=False)
        app.extensions[EXTENSION_KEY].chats = chats
        chat = await add_conversation(sessionmaker, alice.id)
        turn = await add_turn(sessionmaker, chat, alice.id, "running")
        await add_event(sessionmaker, chat, turn, alice.id, "accepted", {})
        response = await client.post(f"/api/chat/turns/{turn}/cancel", headers=alice.headers)
        assert response.status_code == 202, await response.get_data()
        body = await response.get_json()
        assert body["status"] == "cancelled" and _timestamp(body["finished_at"])
        assert chats.calls == [(alice.id, chat, turn)]
        # One final event carrying the stored reply, which the next socket is sent.
        history = TurnHistory(sessionmaker)
        ((request_id, frame),) = await history.undelivered(alice.id, chat)
        assert request_id == turn
        assert frame == {
            "type": "agent_response",
            "response": {
                "execution_time": 0.0,
                "response": {"response": "Turn cancelled", "agents_trace": [], "is_success": False},
                "request_id": str(turn),
                "session_id": str(chat),
                "files": [],
            },
        }
        events = [(e.seq, e.kind) for e in await history.events(alice.id, turn)]
        assert events == [(1, "accepted"), (2, "cancelled")]
        stored = await count(
            sessionmaker,
            "SELECT count(*) FROM chatmessages WHERE request_id = :r"
            " AND sender_type = 'master_agent' AND content = :c",
            r=turn,
            c=json.dumps({"response": "Turn cancelled", "agents_trace": [], "is_success": False}),
        )
        assert stored == 1
        again = await client.post(f"/api/chat/turns/{turn}/cancel", headers=alice.headers)
        assert (again.status_code, await again.get_json()) == (409, FINISHED)

    async def test_without_chats_at_all(
        self, client: QuartClient, sessionmaker: Sessions, alice: LoggedIn
    ) -> None:
        chat = await add_conversation(sessionmaker, alice.id)
        turn = await add_turn(sessionmaker, chat, alice.id, "queued")
        response = await client.post(f"/api/chat/turns/{turn}/cancel", headers=alice.headers)
        assert response.status_code == 202
        assert (await response.get_json())["status"] == "cancelled"

    async def test_a_live_actor_takes_it(
        self, app: Quart, client: QuartClient, sessionmaker: Sessions, alice: LoggedIn
    ) -> None:
        chats = FakeChats(taken=True)
        app.extensions[EXTENSION_KEY].chats = chats
        chat = await add_conversation(sessionmaker, alice.id)
        turn = await add_turn(sessionmaker, chat, alice.id, "running")
        response = await client.post(f"/api/chat/turns/{turn}/cancel", headers=alice.headers)
        assert response.status_code == 202
        # The actor answers the turn itself; nothing was written here.
        assert (await response.get_json())["status"] == "running"
        assert chats.calls == [(alice.id, chat, turn)]
        assert await TurnHistory(sessionmaker).events(alice.id, turn) == []

    async def test_finished_foreign_unknown_and_bad(
        self,
        app: Quart,
        client: QuartClient,
        sessionmaker: Sessions,
        alice: LoggedIn,
        bob: LoggedIn,
    ) -> None:
        chats = FakeChats(taken=False)
        app.extensions[EXTENSION_KEY].chats = chats
        chat = await add_conversation(sessionmaker, alice.id)
        answered = await add_turn(sessionmaker, chat, alice.id, "answered")
        running = await add_turn(sessionmaker, chat, alice.id, "running")
        done = await client.post(f"/api/chat/turns/{answered}/cancel", headers=alice.headers)
        assert (done.status_code, await done.get_json()) == (409, FINISHED)
        for who, request_id in [(bob, running), (alice, uuid4())]:
            missing = await client.post(f"/api/chat/turns/{request_id}/cancel", headers=who.headers)
            assert (missing.status_code, await missing.get_json()) == (404, NOT_FOUND)
        bad = await client.post("/api/chat/turns/nope/cancel", headers=alice.headers)
        assert bad.status_code == 422
        assert (await bad.get_json())["detail"][0]["loc"] == ["path", "request_id"]
        assert chats.calls == []
        still = await TurnHistory(sessionmaker).get_turn(alice.id, running)
        assert still is not None and still.status == "running"
        unauthenticated = await client.post(f"/api/chat/turns/{running}/cancel")
        assert unauthenticated.status_code == 401
