"""Chat conversations and their paged history."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import ChatRepository, SenderType
from web import Settings

from .conftest import LoggedIn, Users

MASTER = {"X-API-KEY": Settings().MASTER_BE_API_KEY}


async def open_chat(client: QuartClient, user: LoggedIn, title: str = "hello") -> Any:
    response = await client.post(
        "/api/chats", json={"session_id": str(uuid4()), "title": title}, headers=user.headers
    )
    assert response.status_code == 200, await response.get_data()
    return await response.get_json()


async def add_messages(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: str, count: int
) -> None:
    for index in range(count):
        async with sessionmaker.begin() as session:
            repo = ChatRepository(session)
            if index % 2:
                content = json.dumps(
                    {"response": f"r{index}", "agents_trace": [], "is_success": True}
                )
                sender = SenderType.MASTER_AGENT
            else:
                content, sender = f"m{index}", SenderType.USER
            await repo.add_message(
                UUID(session_id), sender_type=sender, content=content, request_id=uuid4()
            )


def title_error(title: str, message: str) -> dict[str, Any]:
    return {
        "type": "value_error",
        "loc": ["body", "title"],
        "msg": f"Value error, {message}",
        "input": title,
        "ctx": {"error": {}},
    }


class TestConversations:
    async def test_create_and_list(self, client: QuartClient, users: Users) -> None:
        alice, bob = await users.login(), await users.login()
        session_id = str(uuid4())
        response = await client.post(
            "/api/chats", json={"session_id": session_id, "title": "a" * 20}, headers=alice.headers
        )
        assert response.status_code == 200
        created = await response.get_json()
        assert set(created) == {"session_id", "title", "creator_id", "created_at", "updated_at"}
        assert created["session_id"] == session_id
        assert created["creator_id"] == str(alice.id)
        second = await open_chat(client, alice, "second")
        await open_chat(client, bob)
        response = await client.get("/api/chats", headers=alice.headers)
        assert response.status_code == 200
        body = await response.get_json()
        assert body == {
            "chats": [
                {key: second[key] for key in ("session_id", "title", "created_at", "updated_at")},
                {key: created[key] for key in ("session_id", "title", "created_at", "updated_at")},
            ]
        }
        paged = await client.get("/api/chats?offset=1&limit=1", headers=alice.headers)
        assert [c["title"] for c in (await paged.get_json())["chats"]] == ["a" * 20]

    async def test_create_errors(self, client: QuartClient, users: Users) -> None:
        alice, bob = await users.login(), await users.login()
        taken = await open_chat(client, bob)
        response = await client.post(
            "/api/chats",
            json={"session_id": taken["session_id"], "title": "x"},
            headers=alice.headers,
        )
        assert response.status_code == 400
        assert await response.get_json() == {
            "detail": f"Chat with Session_id - '{taken['session_id']}' already exists"
        }
        for title, message in (
            ("", "Chat title must not be empty"),
            ("a" * 21, "Chat title must not be longer than 20 symbols"),
        ):
            response = await client.post(
                "/api/chats",
                json={"session_id": str(uuid4()), "title": title},
                headers=alice.headers,
            )
            assert response.status_code == 422
            assert await response.get_json() == {"detail": [title_error(title, message)]}

    async def test_rename(self, client: QuartClient, users: Users) -> None:
        alice, bob = await users.login(), await users.login()
        chat = await open_chat(client, alice)
        url = f"/api/chat?session_id={chat['session_id']}"
        response = await client.patch(url, json={"title": "renamed"}, headers=alice.headers)
        assert response.status_code == 200
        body = await response.get_json()
        assert body["title"] == "renamed" and body["creator_id"] == str(alice.id)
        assert set(body) == {"session_id", "title", "creator_id", "created_at", "updated_at"}
        response = await client.patch(url, json={"title": ""}, headers=alice.headers)
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [title_error("", "Chat title must not be empty")]
        }
        for session_id, user in ((chat["session_id"], bob), (str(uuid4()), alice)):
            response = await client.patch(
                f"/api/chat?session_id={session_id}", json={"title": "x"}, headers=user.headers
            )
            assert response.status_code == 400
            assert await response.get_json() == {
                "detail": f"Chat with session_id {session_id} does not exist"
            }

    async def test_delete(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        alice, bob = await users.login(), await users.login()
        chat = await open_chat(client, alice)
        await add_messages(sessionmaker, chat["session_id"], 2)
        url = f"/api/chat?session_id={chat['session_id']}"
        response = await client.delete(url, headers=bob.headers)
        assert response.status_code == 400
        assert await response.get_json() == {
            "detail": f"Chat with session_id: '{chat['session_id']}' does not exist"
        }
        response = await client.delete(url, headers=alice.headers)
        assert response.status_code == 204
        assert await response.get_data() == b""
        history = await client.get(url, headers=alice.headers)
        assert (await history.get_json())["total_count"] == 0
        response = await client.delete(url, headers=alice.headers)
        assert response.status_code == 400
        missing = await client.delete("/api/chat", headers=alice.headers)
        assert missing.status_code == 422


class TestHistory:
    async def test_pages_return_what_was_asked(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        alice = await users.login()
        chat = await open_chat(client, alice)
        session_id = chat["session_id"]
        await add_messages(sessionmaker, session_id, 5)
        response = await client.get(
            f"/api/chat?session_id={session_id}&page=2&per_page=2", headers=alice.headers
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert set(body) == {"total_count", "next_page", "previous_page", "items"}
        assert body["total_count"] == 5
        # Newest first: m4, r3 | m2, r1 | m0.
        assert [item["content"][:6] for item in body["items"]] == ["m2", '{"resp']
        assert json.loads(body["items"][1]["content"])["response"] == "r1"
        assert set(body["items"][0]) == {"sender_type", "content", "request_id", "created_at"}
        assert body["items"][0]["sender_type"] == "user"
        assert body["items"][1]["sender_type"] == "master_agent"
        base = f"http://localhost/api/chat?session_id={session_id}&per_page=2"
        assert body["next_page"] == f"{base}&page=3"
        assert body["previous_page"] == f"{base}&page=1"
        last = await client.get(
            f"/api/chat?session_id={session_id}&page=3&per_page=2", headers=alice.headers
        )
        body = await last.get_json()
        assert [item["content"] for item in body["items"]] == ["m0"]
        assert body["next_page"] is None
        beyond = await client.get(
            f"/api/chat?session_id={session_id}&page=5&per_page=2", headers=alice.headers
        )
        body = await beyond.get_json()
        assert body["items"] == [] and body["next_page"] is None and body["previous_page"] is None
        first = await client.get(f"/api/chat?session_id={session_id}", headers=alice.headers)
        body = await first.get_json()
        assert len(body["items"]) == 5
        assert body["next_page"] is None and body["previous_page"] is None

    async def test_service_mode_and_isolation(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        alice, bob = await users.login(), await users.login()
        chat = await open_chat(client, alice)
        await add_messages(sessionmaker, chat["session_id"], 3)
        url = f"/api/chat?session_id={chat['session_id']}"
        response = await client.get(f"{url}&user_id={alice.id}&per_page=5", headers=MASTER)
        assert response.status_code == 200
        assert (await response.get_json())["total_count"] == 3
        for response in (
            await client.get(url, headers=bob.headers),
            await client.get(f"{url}&user_id={bob.id}", headers=MASTER),
            await client.get(f"/api/chat?session_id={uuid4()}", headers=alice.headers),
        ):
            assert response.status_code == 200
            assert await response.get_json() == {
                "total_count": 0,
                "next_page": None,
                "previous_page": None,
                "items": [],
            }
        response = await client.get(f"{url}&user_id={alice.id}")
        assert response.status_code == 401
        assert await response.get_json() == {
            "detail": "You must provide x-api-key header if user_id query parameter is provided."
        }
        response = await client.get(url)
        assert response.status_code == 400

    async def test_the_master_asking_for_no_history_gets_the_current_message(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        # A model config with max_last_messages 0: the master asks with per_page=0.
        alice = await users.login()
        chat = await open_chat(client, alice)
        await add_messages(sessionmaker, chat["session_id"], 3)
        url = f"/api/chat?session_id={chat['session_id']}&user_id={alice.id}&per_page=0"
        response = await client.get(url, headers=MASTER)
        assert response.status_code == 200, await response.get_data()
        body = await response.get_json()
        assert [(item["sender_type"], item["content"]) for item in body["items"]] == [
            ("user", "m2")
        ]
        assert body["total_count"] == 3
        assert body["next_page"] is None and body["previous_page"] is None
        empty = await open_chat(client, alice)
        url = f"/api/chat?session_id={empty['session_id']}&user_id={alice.id}&per_page=0"
        body = await (await client.get(url, headers=MASTER)).get_json()
        assert body == {"total_count": 0, "next_page": None, "previous_page": None, "items": []}
        # Users still page by at least one.
        url = f"/api/chat?session_id={chat['session_id']}&per_page=0"
        response = await client.get(url, headers=alice.headers)
        assert response.status_code == 422
        assert await response.get_json() == {
            "detail": [
                {
                    "type": "greater_than_equal",
                    "loc": ["query", "per_page"],
                    "msg": "Input should be greater than or equal to 1",
                    "input": "0",
                    "ctx": {"ge": 1},
                }
            ]
        }

    async def test_validation(self, client: QuartClient, users: Users) -> None:
        alice = await users.login()
        session_id = uuid4()
        cases = [
            (f"session_id={session_id}&page=0", "page", "greater_than_equal"),
            (f"session_id={session_id}&per_page=0", "per_page", "greater_than_equal"),
            (f"session_id={session_id}&per_page=101", "per_page", "less_than_equal"),
            ("session_id=xyz", "session_id", "uuid_parsing"),
            ("", "session_id", "missing"),
        ]
        for query, field, kind in cases:
            response = await client.get(f"/api/chat?{query}", headers=alice.headers)
            assert response.status_code == 422, query
            [error] = (await response.get_json())["detail"]
            assert error["loc"] == ["query", field]
            assert error["type"] == kind
