"""The front-end WebSocket through the real app, chat actors and database."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.testing.connections import WebsocketDisconnectError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.chat import DEFAULT_QUEUED_MESSAGES, ChatDeps, ChatsClient, chat_supervisor_spec
from actors.fanout import LogFanoutClient, log_fanout_spec
from persistence import ChatRepository, ConfigRepository, LogEntry, ProviderRepository
from runtime import open_actor_system
from web import Settings, create_app
from web.blueprints.ws import BUSY, CHAT_UNAVAILABLE
from web.services import AppServices

from ..actors.chat.conftest import CIPHER, Answer, FakeMaster
from .conftest import LoggedIn, Users


@pytest.fixture(name="master")
def _master() -> FakeMaster:
    return FakeMaster()


@pytest.fixture(name="fanout")
async def _system(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], master: FakeMaster
) -> AsyncIterator[tuple[ChatsClient, LogFanoutClient]]:
    deps = ChatDeps(sessionmaker, master, CIPHER, master_timeout=5.0)
    async with (
        master.serving(),
        open_actor_system(chat_supervisor_spec(deps), log_fanout_spec()) as system,
    ):
        fanout = LogFanoutClient(system)
        yield ChatsClient(system, fanout=fanout), fanout


@pytest.fixture(name="app")
def _app(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    fanout: tuple[ChatsClient, LogFanoutClient],
) -> Quart:
    services = AppServices(settings, sessionmaker, chats=fanout[0])
    return create_app(settings, sessionmaker, services=services)


async def add_model(sessionmaker: async_sessionmaker[AsyncSession], user: LoggedIn) -> None:
    async with sessionmaker.begin() as session:
        provider = await ProviderRepository(session).add(
            creator_id=user.id,
            name="openai",
            api_key=CIPHER.encrypt("sk"),
            provider_metadata={},
        )
        await ConfigRepository(session).add(
            creator_id=user.id, provider_id=provider.id, name="gpt", model="m", system_prompt="s"
        )


async def receive(ws: Any, within: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        frame: dict[str, Any] = json.loads(await ws.receive())
    return frame


class TestHandshake:
    @pytest.mark.parametrize("token", ["", "garbage"])
    async def test_bad_token_closes_1008_before_accepting(
        self, client: QuartClient, token: str
    ) -> None:
        async with client.websocket(f"/frontend/ws?token={token}") as ws:
            with pytest.raises(WebsocketDisconnectError) as info:
                await ws.receive()
        assert info.value.args[0] == 1008
        assert not ws.accepted  # type: ignore[attr-defined]

    async def test_missing_token(self, client: QuartClient) -> None:
        async with client.websocket("/frontend/ws") as ws:
            with pytest.raises(WebsocketDisconnectError) as info:
                await ws.receive()
        assert info.value.args[0] == 1008

    async def test_bad_session_id(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        async with client.websocket(f"/frontend/ws?token={user.token}&session_id=xyz") as ws:
            with pytest.raises(WebsocketDisconnectError) as info:
                await ws.receive()
        assert info.value.args[0] == 1008
        assert not ws.accepted  # type: ignore[attr-defined]


class TestMessages:
    async def test_full_turn_in_both_forms(
        self,
        client: QuartClient,
        users: Users,
        sessionmaker: async_sessionmaker[AsyncSession],
        master: FakeMaster,
    ) -> None:
        user = await users.login()
        await add_model(sessionmaker, user)
        async with client.websocket(f"/frontend/ws?token={user.token}") as ws:
            await ws.send(json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"}))
            first = await receive(ws)
            await ws.send(json.dumps({"message": "again", "llm": {"llm_name": "gpt"}}))
            second = await receive(ws)
        assert first["type"] == second["type"] == "agent_response"
        assert first["response"]["response"] == {
            "response": "hi",
            "agents_trace": [],
            "is_success": True,
        }
        session_id = first["response"]["session_id"]
        assert second["response"]["session_id"] == session_id
        uuid.UUID(session_id)
        assert len(master.calls) == 2
        response = await client.get(
            "/api/chat", query_string={"session_id": session_id}, headers=user.headers
        )
        body = await response.get_json()
        assert body["total_count"] == 4

    async def test_invalid_frame_then_a_valid_one(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        user = await users.login()
        await add_model(sessionmaker, user)
        async with client.websocket(f"/frontend/ws?token={user.token}") as ws:
            await ws.send("not json")
            invalid = await receive(ws)
            await ws.send(json.dumps({"message": "x", "llm_name": "gpt", "files": ["nope"]}))
            bad_file = await receive(ws)
            await ws.send(json.dumps({"message": "x"}))
            missing = await receive(ws)
            await ws.send(json.dumps({"message": "x", "llm_name": "gpt", "provider": "openai"}))
            ok = await receive(ws)
        assert invalid["type"] == "error" and invalid["error"] == "Message validation failed"
        assert invalid["details"][0]["type"] == "json_invalid"
        assert bad_file["details"][0]["loc"] == ["files", 0]
        assert missing["details"] == [
            {
                "type": "missing",
                "loc": ["llm_name"],
                "msg": "Field required",
                "input": {"message": "x"},
            }
        ]
        assert "url" not in json.dumps(invalid["details"])
        assert ok["type"] == "agent_response"

    async def test_another_users_session(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        alice, bob = await users.login(), await users.login()
        await add_model(sessionmaker, alice)
        await add_model(sessionmaker, bob)
        session_id = uuid.uuid4()
        async with sessionmaker.begin() as session:
            await ChatRepository(session).create_conversation(
                session_id, owner_id=alice.id, title="t"
            )
        url = f"/frontend/ws?token={bob.token}&session_id={session_id}"
        async with client.websocket(url) as ws:
            await ws.send(json.dumps({"message": "x", "llm_name": "gpt", "provider": "openai"}))
            frame = await receive(ws)
        assert frame["response"]["response"] == {
            "response": f"Chat session {session_id} was not found",
            "agents_trace": [],
            "is_success": False,
        }
        assert frame["response"]["execution_time"] == 0.0

    async def test_two_sockets_on_one_session_and_logs(
        self,
        client: QuartClient,
        users: Users,
        sessionmaker: async_sessionmaker[AsyncSession],
        fanout: tuple[ChatsClient, LogFanoutClient],
    ) -> None:
        alice, bob = await users.login(), await users.login()
        await add_model(sessionmaker, alice)
        session_id = uuid.uuid4()
        url = f"/frontend/ws?token={alice.token}&session_id={session_id}"
        bob_url = f"/frontend/ws?token={bob.token}&session_id={session_id}"
        async with (
            client.websocket(url) as one,
            client.websocket(url) as two,
            client.websocket(bob_url) as spy,
        ):
            for ws in (two, spy):
                # An answered invalid frame shows the socket is subscribed.
                await ws.send("{}")
                assert (await receive(ws))["type"] == "error"
            await one.send(json.dumps({"message": "x", "llm_name": "gpt", "provider": "openai"}))
            a, b = await receive(one), await receive(two)
            assert a == b
            from datetime import datetime

            now = datetime(2026, 1, 1)
            log = LogEntry(1, session_id, uuid.uuid4(), "a", "info", "m", alice.id, now, now)
            await fanout[1].logs_stored([log])
            assert (await receive(one))["type"] == "agent_log"
            assert (await receive(two))["type"] == "agent_log"
            with anyio.move_on_after(0.2):
                await spy.receive()
                raise AssertionError("bob received a frame")


def refused(frame: dict[str, Any], text: str) -> bool:
    return frame["type"] == "agent_response" and frame["response"]["response"] == {
        "response": text,
        "agents_trace": [],
        "is_success": False,
    }


class TestEveryMessageIsAnswered:
    """The original web UI shows only agent_response frames: a message it sends and that
    cannot be taken must still get one, or the UI waits for ever."""

    async def test_a_message_over_the_queue_is_refused_with_an_agent_response(
        self,
        client: QuartClient,
        users: Users,
        sessionmaker: async_sessionmaker[AsyncSession],
        master: FakeMaster,
    ) -> None:
        release = anyio.Event()

        async def held(payload: Any) -> Any:
            await release.wait()
            return Answer({"response": "done", "agents_trace": [], "is_success": True}, 0.1)

        master.script = held
        user = await users.login()
        await add_model(sessionmaker, user)
        message = json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"})
        async with client.websocket(f"/frontend/ws?token={user.token}") as ws:
            for _ in range(1 + DEFAULT_QUEUED_MESSAGES):  # one running, the rest waiting
                await ws.send(message)
            with anyio.fail_after(5):
                while not master.calls:  # noqa: ASYNC110 - the fake has no call event
                    await anyio.sleep(0.01)
            await ws.send(message)
            assert refused(await receive(ws), BUSY)
            release.set()
            answers = [await receive(ws) for _ in range(1 + DEFAULT_QUEUED_MESSAGES)]
        assert all(a["response"]["response"]["response"] == "done" for a in answers)

    async def test_a_chat_that_cannot_be_reached_answers_and_keeps_the_socket(
        self,
        settings: Settings,
        users: Users,
        sessionmaker: async_sessionmaker[AsyncSession],
        master: FakeMaster,
    ) -> None:
        deps = ChatDeps(sessionmaker, master, CIPHER, master_timeout=5.0)
        # One live conversation at most: a second one cannot be reached meanwhile.
        async with (
            master.serving(),
            open_actor_system(chat_supervisor_spec(deps, max_children=1)) as system,
        ):
            services = AppServices(settings, sessionmaker, chats=ChatsClient(system))
            client = create_app(settings, sessionmaker, services=services).test_client()
            user = await users.login()
            await add_model(sessionmaker, user)
            message = json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"})
            first_url = f"/frontend/ws?token={user.token}&session_id={uuid.uuid4()}"
            second_url = f"/frontend/ws?token={user.token}&session_id={uuid.uuid4()}"
            async with AsyncExitStack() as outlives_the_first:
                async with client.websocket(first_url) as first:
                    await first.send(message)
                    assert (await receive(first))["response"]["response"]["is_success"]
                    second = await outlives_the_first.enter_async_context(
                        client.websocket(second_url)
                    )
                    await second.send(message)
                    assert refused(await receive(second), CHAT_UNAVAILABLE)
                # The first conversation has ended: the same socket is served now.
                with anyio.fail_after(5):
                    while True:
                        await second.send(message)
                        frame = await receive(second)
                        if frame["response"]["response"]["is_success"]:
                            break
                        assert refused(frame, CHAT_UNAVAILABLE)
                        await anyio.sleep(0.05)
