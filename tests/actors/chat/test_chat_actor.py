"""ChatActor turns against a real database and runtime, with a fake master edge."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.chat import (
    ChatBusyError,
    ChatDeps,
    ChatInput,
    ChatsClient,
    ChatSupervisor,
    chat_supervisor_spec,
)
from persistence import (
    ChatRepository,
    FileRepository,
    ProviderRepository,
    SenderType,
    create_engine,
    create_sessionmaker,
)
from runtime import Actor, ActorSystem, ChildSpec, open_actor_system
from runtime.testing import wait_for

from .conftest import CIPHER, Answer, FakeMaster, FakeMasterError, Running, World, next_frame


async def history(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID, owner: uuid.UUID
) -> list[tuple[str, str]]:
    async with sessionmaker() as session:
        page = await ChatRepository(session).page_messages(session_id, owner_id=owner)
    return [(m.sender_type.value, m.content) for m in reversed(page.items)]


def error_object(text: str) -> dict[str, Any]:
    return {"response": text, "agents_trace": [], "is_success": False}


class TestTurn:
    async def test_stores_both_turns_and_answers(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        owner = await world.user()
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("Weather in Paris tomorrow please", "gpt", "openai"))
            frame = await next_frame(chat)
        assert frame["type"] == "agent_response"
        body = frame["response"]
        assert set(body) == {"execution_time", "response", "request_id", "session_id", "files"}
        assert body["execution_time"] == 1.5
        assert body["response"] == {"response": "hi", "agents_trace": [], "is_success": True}
        assert body["session_id"] == str(session_id)
        assert body["files"] == []
        assert master.calls[0]["request_id"] == body["request_id"]
        assert await history(sessionmaker, session_id, owner.id) == [
            ("user", "Weather in Paris tomorrow please"),
            ("master_agent", json.dumps(body["response"])),
        ]
        async with sessionmaker() as session:
            conversation = await ChatRepository(session).get_conversation(
                session_id, owner_id=owner.id
            )
        assert conversation is not None and conversation.title == "Weather in Paris tom"

    async def test_payload_shape(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        owner = await world.user()
        session_id = uuid.uuid4()
        async with sessionmaker.begin() as session:
            file = await FileRepository(session).add(
                creator_id=owner.id,
                mimetype="text/plain",
                original_name="a.txt",
                internal_name="x.txt",
                from_agent=False,
            )
        seen: list[bool] = []

        async def script(payload: Mapping[str, Any]) -> Answer:
            # The user's message is committed before the master is asked.
            items = await history(sessionmaker, session_id, owner.id)
            seen.append(items == [("user", "")])
            return Answer({"response": "ok", "agents_trace": [], "is_success": True}, 0.1)

        master.script = script
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("", "gpt", "openai", (file.id, uuid.uuid4())))
            frame = await next_frame(chat)
        assert seen == [True]
        call = master.calls[0]
        request_id = frame["response"]["request_id"]
        payload = call["payload"]
        assert set(payload) == {"session_id", "user_id", "configs", "files", "timestamp"}
        assert payload["session_id"] == str(session_id)
        assert payload["user_id"] == str(owner.id)
        assert isinstance(payload["timestamp"], int)
        assert payload["configs"] == {
            "provider": "openai",
            "model": "gpt-4o",
            "temperature": 0.7,
            "system_prompt": "be nice",
            "user_prompt": "",
            "config_name": "gpt",
            "max_last_messages": 3,
            "deployment_name": "dep",
            "endpoint": "http://e",
            "api_key": "sk-plain",
        }
        dto = {
            "id": str(file.id),
            "session_id": str(session_id),
            "request_id": request_id,
            "original_name": "a.txt",
            "mimetype": "text/plain",
            "internal_id": str(file.id),
            "internal_name": "x.txt",
            "from_agent": False,
            "creator_id": str(owner.id),
        }
        assert payload["files"] == [dto]
        assert frame["response"]["files"] == [dto]
        assert call["timeout"] == 5.0
        async with sessionmaker() as session:
            conversation = await ChatRepository(session).get_conversation(
                session_id, owner_id=owner.id
            )
        assert conversation is not None and conversation.title == "New Chat"

    async def test_older_form_uses_the_configs_provider(
        self, running: Running, world: World, master: FakeMaster
    ) -> None:
        owner = await world.user(provider="ollama", api_key=None, metadata={"base_url": "u"})
        async with running.chats.open_session(owner.id, uuid.uuid4()) as chat:
            await chat.post(ChatInput("x", "gpt", None))
            frame = await next_frame(chat)
        assert frame["response"]["response"]["is_success"] is True
        configs = master.calls[0]["payload"]["configs"]
        assert configs["provider"] == "ollama"
        assert configs["api_key"] is None
        assert configs["base_url"] == "u"


class TestErrors:
    @pytest.mark.parametrize(
        ("provider", "config", "text"),
        [
            ("nope", "gpt", "Provider nope does not exist"),
            ("openai", "nope", "Config nope does not exist"),
            (None, "nope", "Config nope does not exist"),
        ],
    )
    async def test_unknown_provider_or_config_stores_nothing(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
        provider: str | None,
        config: str,
        text: str,
    ) -> None:
        owner = await world.user()
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("hello", config, provider))
            frame = await next_frame(chat)
            # The socket stays usable.
            await chat.post(ChatInput("again", "gpt", "openai"))
            second = await next_frame(chat)
        assert frame["response"]["response"] == error_object(text)
        assert frame["response"]["execution_time"] == 0.0
        assert second["response"]["response"]["is_success"] is True
        assert len(master.calls) == 1
        assert [m[0] for m in await history(sessionmaker, session_id, owner.id)] == [
            "user",
            "master_agent",
        ]

    async def test_undecryptable_key(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        owner = await world.user()
        async with sessionmaker.begin() as session:
            from persistence import ProviderRepository

            await ProviderRepository(session).patch(
                "openai", owner_id=owner.id, api_key="v1:other:abc"
            )
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("hello", "gpt", "openai"))
            frame = await next_frame(chat)
        assert frame["response"]["response"] == error_object(
            "Could not decrypt api_key. Make sure 'api_key' exists and model config was "
            "created beforehand "
        )
        assert master.calls == []
        assert await history(sessionmaker, session_id, owner.id) == []

    async def test_later_turns_follow_config_and_key_changes(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        # Later turns store the message with their look-up while the provider's key is
        # the one that worked; any change sends them through every check again.
        owner = await world.user()
        session_id = uuid.uuid4()

        async def set_key(api_key: str) -> None:
            async with sessionmaker.begin() as session:
                await ProviderRepository(session).patch(
                    "openai", owner_id=owner.id, api_key=api_key
                )

        async with running.chats.open_session(owner.id, session_id) as chat:
            for text in ("one", "two"):
                await chat.post(ChatInput(text, "gpt", "openai"))
                assert (await next_frame(chat))["response"]["response"]["is_success"]
            await set_key(CIPHER.encrypt("sk-rotated"))
            await chat.post(ChatInput("three", "gpt", "openai"))
            assert (await next_frame(chat))["response"]["response"]["is_success"]
            await chat.post(ChatInput("four", "gpt", "other"))
            missing = (await next_frame(chat))["response"]["response"]
            await set_key("v1:other:abc")
            await chat.post(ChatInput("five", "gpt", "openai"))
            undecryptable = (await next_frame(chat))["response"]["response"]
        keys = [call["payload"]["configs"]["api_key"] for call in master.calls]
        assert keys == ["sk-plain", "sk-plain", "sk-rotated"]
        assert missing == error_object("Provider other does not exist")
        assert undecryptable["is_success"] is False
        users = [text for kind, text in await history(sessionmaker, session_id, owner.id)]
        assert users[0::2] == ["one", "two", "three"]  # four and five were never stored
        assert len(users) == 6

    @pytest.mark.parametrize(
        ("error", "text"),
        [
            (FakeMasterError("Agent is NOT active"), "Agent is NOT active"),
            (
                FakeMasterError("Cannot connect to router service. Try again later"),
                "Cannot connect to router service. Try again later",
            ),
        ],
    )
    async def test_master_errors_are_stored_as_objects(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
        error: Exception,
        text: str,
    ) -> None:
        async def script(payload: Mapping[str, Any]) -> Answer:
            raise error

        master.script = script
        owner = await world.user()
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("hello", "gpt", "openai"))
            frame = await next_frame(chat)
        assert frame["response"]["response"] == error_object(text)
        assert frame["response"]["execution_time"] == 0.0
        assert await history(sessionmaker, session_id, owner.id) == [
            ("user", "hello"),
            ("master_agent", json.dumps(error_object(text))),
        ]

    async def test_invalid_master_reply(
        self, running: Running, world: World, master: FakeMaster
    ) -> None:
        async def script(payload: Mapping[str, Any]) -> Answer:
            return Answer([1, 2], 0.3)

        master.script = script
        owner = await world.user()
        async with running.chats.open_session(owner.id, uuid.uuid4()) as chat:
            await chat.post(ChatInput("hello", "gpt", "openai"))
            frame = await next_frame(chat)
        assert frame["response"]["response"] == error_object(
            "Unexpected error occured. Try again later"
        )

    async def test_another_users_session(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        alice, bob = await world.user(), await world.user()
        session_id = uuid.uuid4()
        async with running.chats.open_session(alice.id, session_id) as chat:
            await chat.post(ChatInput("mine", "gpt", "openai"))
            await next_frame(chat)
        async with running.chats.open_session(bob.id, session_id) as chat:
            await chat.post(ChatInput("theirs", "gpt", "openai"))
            frame = await next_frame(chat)
        assert frame["response"]["response"] == error_object(
            f"Chat session {session_id} was not found"
        )
        assert len(master.calls) == 1
        stored = await history(sessionmaker, session_id, alice.id)
        assert [m[1] for m in stored][:1] == ["mine"] and len(stored) == 2


class TestDeadline:
    @pytest.fixture(name="deadline")
    def _deadline(self) -> float:
        return 0.2

    async def test_deadline_error(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        async def script(payload: Mapping[str, Any]) -> Answer:
            await anyio.sleep_forever()
            raise AssertionError

        master.script = script
        owner = await world.user()
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("hello", "gpt", "openai"))
            frame = await next_frame(chat, within=2)
        text = "Master agent did not answer within 0.2 s"
        assert frame["response"]["response"] == error_object(text)
        assert (await history(sessionmaker, session_id, owner.id))[-1] == (
            "master_agent",
            json.dumps(error_object(text)),
        )


class TestQueue:
    async def test_second_message_waits_for_the_first(
        self, running: Running, world: World, master: FakeMaster
    ) -> None:
        release = anyio.Event()

        async def script(payload: Mapping[str, Any]) -> Answer:
            if len(master.calls) == 1:
                await release.wait()
            return Answer({"response": str(len(master.calls))}, 0.0)

        master.script = script
        owner = await world.user()
        async with running.chats.open_session(owner.id, uuid.uuid4()) as chat:
            await chat.post(ChatInput("one", "gpt", "openai"))
            await chat.post(ChatInput("two", "gpt", "openai"))
            await wait_for(lambda: len(master.calls) == 1)
            await anyio.sleep(0.05)
            assert len(master.calls) == 1
            release.set()
            first, second = await next_frame(chat), await next_frame(chat)
        assert first["response"]["response"] == {"response": "1"}
        assert second["response"]["response"] == {"response": "2"}
        assert first["response"]["request_id"] != second["response"]["request_id"]

    async def test_full_queue_is_refused(
        self, running: Running, world: World, master: FakeMaster
    ) -> None:
        release = anyio.Event()

        async def script(payload: Mapping[str, Any]) -> Answer:
            await release.wait()
            return Answer({"response": "x"}, 0.0)

        master.script = script
        owner = await world.user()
        async with running.chats.open_session(owner.id, uuid.uuid4()) as chat:
            await chat.post(ChatInput("one", "gpt", "openai"))
            await wait_for(lambda: len(master.calls) == 1)
            with pytest.raises(ChatBusyError):
                for _ in range(100):
                    await chat.post(ChatInput("more", "gpt", "openai"))
            release.set()


class TestSockets:
    async def test_every_socket_of_the_session_gets_the_frame(
        self, running: Running, world: World
    ) -> None:
        owner = await world.user()
        session_id = uuid.uuid4()
        async with (
            running.chats.open_session(owner.id, session_id) as one,
            running.chats.open_session(owner.id, session_id) as two,
        ):
            await one.post(ChatInput("hello", "gpt", "openai"))
            a, b = await next_frame(one), await next_frame(two)
        assert a == b

    async def test_slow_socket_is_closed_not_waited_for(
        self, running: Running, world: World
    ) -> None:
        owner = await world.user()
        session_id = uuid.uuid4()
        async with (
            running.chats.open_session(owner.id, session_id) as slow,
            running.chats.open_session(owner.id, session_id) as fast,
        ):
            for _ in range(slow.outbox.capacity):
                assert slow.send_nowait("{}")
            await fast.post(ChatInput("hello", "gpt", "openai"))
            assert (await next_frame(fast))["type"] == "agent_response"
            assert slow.outbox.closed and slow.outbox.overflowed

    async def test_passivates_when_the_last_socket_leaves(
        self, running: Running, world: World
    ) -> None:
        owner = await world.user()
        supervisor = running.system.supervisor("chats")
        assert isinstance(supervisor, ChatSupervisor)
        async with running.chats.open_session(owner.id, uuid.uuid4()) as chat:
            await chat.post(ChatInput("hello", "gpt", "openai"))
            await next_frame(chat)
            assert len(supervisor.keys()) == 1
        await wait_for(lambda: supervisor.keys() == [])

    async def test_a_socket_starts_no_chat_actor_before_its_first_message(
        self, running: Running, world: World
    ) -> None:
        owner = await world.user()
        supervisor = running.system.supervisor("chats")
        assert isinstance(supervisor, ChatSupervisor)
        rooms = supervisor.deps.rooms
        session_id = uuid.uuid4()
        async with (
            running.chats.open_session(owner.id, session_id) as one,
            running.chats.open_session(owner.id, session_id) as two,
        ):
            assert supervisor.keys() == [] and len(rooms) == 1
            assert not await one.cancel(uuid.uuid4())  # starts none either
            assert supervisor.keys() == []
            await one.post(ChatInput("hello", "gpt", "openai"))
            a, b = await next_frame(one), await next_frame(two)
            assert a == b and len(supervisor.keys()) == 1
        await wait_for(lambda: supervisor.keys() == [] and len(rooms) == 0)

    async def test_a_post_while_the_actor_passivates_starts_the_next_one(
        self, running: Running, world: World
    ) -> None:
        owner = await world.user()
        supervisor = running.system.supervisor("chats")
        assert isinstance(supervisor, ChatSupervisor)
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as first:
            await first.post(ChatInput("one", "gpt", "openai"))
            await next_frame(first)
        # The actor has been told its last socket left; a new socket posts at once.
        async with running.chats.open_session(owner.id, session_id) as second:
            await second.post(ChatInput("two", "gpt", "openai"))
            assert (await next_frame(second))["type"] == "agent_response"

    async def test_a_plain_socket_gets_the_replies_that_reached_no_socket(
        self, running: Running, world: World
    ) -> None:
        owner = await world.user()
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("hello", "gpt", "openai"))
            # The socket leaves before the answer: the reply reaches no socket.
        async with running.chats.open_session(owner.id, session_id) as again:
            frame = await next_frame(again)
            assert frame["type"] == "agent_response"
        async with running.chats.open_session(owner.id, session_id) as third:
            with anyio.move_on_after(0.3):
                extra = await third.outbox.receive()
                raise AssertionError(f"delivered twice: {extra}")


class TestCrash:
    async def test_crash_answers_restarts_and_keeps_the_socket(
        self,
        running: Running,
        world: World,
        master: FakeMaster,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        async def script(payload: Mapping[str, Any]) -> Answer:
            return Answer({"response": "fine"}, 0.2)

        master.script = script
        master.crash_next = RuntimeError("boom")
        owner = await world.user()
        session_id = uuid.uuid4()
        async with running.chats.open_session(owner.id, session_id) as chat:
            await chat.post(ChatInput("hello", "gpt", "openai"))
            frame = await next_frame(chat)
            assert frame["response"]["response"] == error_object(
                "Unexpected error occured. Try again later"
            )
            info = running.system.snapshot().find("chats")
            assert info is not None

            def restarted() -> bool:
                node = running.system.snapshot().find("chats")
                return node is not None and any(
                    c.restarts == 1 for c in getattr(node, "children", ())
                )

            await wait_for(restarted)
            await chat.post(ChatInput("again", "gpt", "openai"))
            second = await next_frame(chat)
        assert second["response"]["response"] == {"response": "fine"}
        assert [m[0] for m in await history(sessionmaker, session_id, owner.id)] == [
            "user",
            "master_agent",
            "user",
            "master_agent",
        ]
        assert SenderType.MASTER_AGENT.value == "master_agent"


class _Router(Actor[str]):
    """Stands for the router session: crashes when told ``"crash"``."""

    async def handle(self, message: str) -> None:
        if message == "crash":
            raise RuntimeError("the router session crashed")


def _chat_restarts(system: ActorSystem) -> list[int]:
    node = system.snapshot().find("chats")
    return [child.restarts for child in getattr(node, "children", ())]


class TestOutages:
    async def test_an_unreachable_database_answers_the_turn_and_crashes_nothing(
        self, master: FakeMaster
    ) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none")
        deps = ChatDeps(create_sessionmaker(engine), master, CIPHER)
        try:
            async with (
                master.serving(),
                open_actor_system(chat_supervisor_spec(deps)) as system,
            ):
                chats = ChatsClient(system)
                async with chats.open_session(uuid.uuid4(), uuid.uuid4()) as chat:
                    for text in ("one", "two"):
                        await chat.post(ChatInput(text, "gpt", "openai"))
                        frame = await next_frame(chat)
                        assert frame["response"]["response"] == error_object(
                            "Database unavailable. Try again later"
                        )
                    assert _chat_restarts(system) == [0]
        finally:
            await engine.dispose()
        assert master.calls == []

    async def test_the_router_session_going_down_fails_the_waiting_turn_at_once(
        self, sessionmaker: async_sessionmaker[AsyncSession], world: World, master: FakeMaster
    ) -> None:
        async def script(payload: Mapping[str, Any]) -> Answer:
            await anyio.sleep_forever()
            raise AssertionError

        master.script = script
        deps = ChatDeps(sessionmaker, master, CIPHER, master_timeout=60)
        owner = await world.user()
        async with (
            master.serving(),
            open_actor_system(ChildSpec("router", _Router), chat_supervisor_spec(deps)) as system,
        ):
            master.ref = system.ref_of("router")
            async with ChatsClient(system).open_session(owner.id, uuid.uuid4()) as chat:
                await chat.post(ChatInput("hello", "gpt", "openai"))
                await wait_for(lambda: len(master.calls) == 1)
                await master.ref.tell("crash")
                # Far sooner than the 60-s deadline.
                frame = await next_frame(chat, within=5)
                assert frame["response"]["response"] == error_object(
                    "Cannot connect to router service. Try again later"
                )
                assert master.cancelled == []
                assert _chat_restarts(system) == [0]
