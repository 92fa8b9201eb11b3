"""Agent logs, scoped to the user who owns the session (or the logging agent)."""

from __future__ import annotations

from uuid import UUID, uuid4

from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import LogRepository, NewLog

from .conftest import Agents, LoggedIn, Users

KEYS = {
    "session_id",
    "request_id",
    "agent_id",
    "log_level",
    "message",
    "creator_id",
    "created_at",
    "updated_at",
}


async def add_logs(sessionmaker: async_sessionmaker[AsyncSession], *logs: NewLog) -> None:
    async with sessionmaker.begin() as session:
        await LogRepository(session).add_many(logs)


async def open_chat(client: QuartClient, user: LoggedIn) -> UUID:
    session_id = uuid4()
    response = await client.post(
        "/api/chats", json={"session_id": str(session_id), "title": "t"}, headers=user.headers
    )
    assert response.status_code == 200
    return session_id


class TestLogs:
    async def test_by_request_and_session(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        alice, bob = await users.login(), await users.login()
        session_id = await open_chat(client, alice)
        bob_agent = await agents.register(bob)
        request_id = uuid4()
        await add_logs(
            sessionmaker,
            NewLog(session_id, request_id, "master_server_ml", "planning", "info"),
            NewLog(session_id, request_id, bob_agent["id"], "in alice's chat", "debug"),
            NewLog(session_id, uuid4(), "master_server_ml", "later", "info"),
        )
        response = await client.get(
            f"/api/logs/list?request_id={request_id}", headers=alice.headers
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert [log["message"] for log in body] == ["planning", "in alice's chat"]
        assert set(body[0]) == KEYS
        assert body[0]["creator_id"] == str(alice.id)
        assert body[0]["agent_id"] == "master_server_ml"
        assert body[0]["session_id"] == str(session_id)
        assert body[0]["request_id"] == str(request_id)
        assert len(body[0]["created_at"]) == len("2026-11-25T12:00:20.524593")
        response = await client.get(
            f"/api/logs/list?session_id={session_id}", headers=alice.headers
        )
        assert len(await response.get_json()) == 3
        # Bob's agent logged in Alice's session: the log is Alice's, not Bob's.
        for query in (f"request_id={request_id}", f"session_id={session_id}"):
            response = await client.get(f"/api/logs/list?{query}", headers=bob.headers)
            assert response.status_code == 200
            assert await response.get_json() == []

    async def test_without_conversation_belongs_to_agent_creator(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        alice, bob = await users.login(), await users.login()
        agent = await agents.register(bob)
        request_id = uuid4()
        await add_logs(sessionmaker, NewLog(uuid4(), request_id, agent["id"], "m", "info"))
        response = await client.get(f"/api/logs/list?request_id={request_id}", headers=bob.headers)
        [log] = await response.get_json()
        assert log["creator_id"] == str(bob.id)
        response = await client.get(
            f"/api/logs/list?request_id={request_id}", headers=alice.headers
        )
        assert await response.get_json() == []

    async def test_errors(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        both = f"/api/logs/list?request_id={uuid4()}&session_id={uuid4()}"
        response = await client.get(both, headers=user.headers)
        assert response.status_code == 400
        assert await response.get_json() == {
            "detail": "Only 'request_id' or 'session_id' could be provided but not both"
        }
        response = await client.get("/api/logs/list", headers=user.headers)
        assert response.status_code == 400
        assert await response.get_json() == {
            "detail": "Either 'request_id' or 'session_id' must be provided"
        }
        response = await client.get("/api/logs/list?request_id=xyz", headers=user.headers)
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["type"] == "uuid_parsing"
        assert error["loc"] == ["query", "request_id"]
        assert error["input"] == "xyz"
        assert (await client.get(f"/api/logs/list?request_id={uuid4()}")).status_code == 401
