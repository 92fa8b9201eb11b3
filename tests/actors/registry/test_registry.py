"""The registry against the real router, real PostgreSQL and real genai-protocol agents."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import jwt
import pytest
from sqlalchemy import func, select

from actors.registry import (
    RegistryClient,
    RegistryConfig,
    decode_agent_jwt,
    next_alias,
    normalise_name,
    registry_spec,
    validate_log,
)
from actors.session import AgentLogged
from persistence import AgentFlow, AgentRepository, FlowRepository, Log, LogEntry
from runtime import ActorState, open_actor_system
from runtime.testing import wait_for_state
from tests.actors.router import handlers
from tests.actors.router.conftest import open_peer

from ..agents import (
    SECRET,
    RecordingSink,
    add_agent,
    add_conversation,
    is_active,
    library_session,
    mint_jwt,
    open_stack,
    start_agent,
    stop_processes,
    wait_active,
    wait_stat,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from anyio.abc import Process
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

# Registration and disconnect show in the database within milliseconds on a quiet
# machine; the bound is generous so that a busy one does not fail the tests.
FAST = 5.0


@pytest.fixture(params=["1.0.9", "2.0.3"], name="python")
def _python(request: pytest.FixtureRequest) -> Path | str:
    name = "python_109" if request.param == "1.0.9" else "python_203"
    python: Path | str = request.getfixturevalue(name)
    return python


async def invoke(
    url: str, agent_id: uuid.UUID, text: str, sid: str, rid: str, **payload: Any
) -> dict[str, Any]:
    """Invoke an agent as another agent's send() would, and return its reply."""
    async with open_peer(url, **{"x-custom-invoke-key": f"caller:{agent_id}"}) as caller:
        await caller.send(
            {
                "message_type": "agent_invoke",
                "agent_uuid": str(agent_id),
                "request_payload": {"text": text, **payload},
                "request_metadata": {"request_id": rid, "session_id": sid},
            }
        )
        while True:
            frame = await caller.next(10)
            if "message_type" in frame:
                return frame


class TestRules:
    def test_names_and_aliases(self) -> None:
        assert normalise_name("My Agent") == "my_agent"
        assert next_alias("my_agent_abcdef", "my_agent") is None
        alias = next_alias("old_abcdef", "my_agent")
        assert alias is not None and alias.startswith("my_agent_") and len(alias) == 15

    def test_log_validation(self) -> None:
        sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
        assert validate_log("a", sid, rid, "info", "m") is not None
        assert validate_log("a", "", rid, "info", "m") is None
        assert validate_log("a", sid, rid, "", "m") is None
        assert validate_log("a", "not-a-uuid", rid, "info", "m") is None
        stored = validate_log("a", sid, rid, "info", "a\x00b")
        assert stored is not None and stored.message == "a\ufffdb"

    def test_a_valid_token_is_checked_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # The router's check and the registry's read the same token, and a storm
        # reconnects the same agents: one signature check per token is enough.
        decodes: list[str] = []
        decode = jwt.decode

        def counted(token: str, *args: Any, **kwargs: Any) -> Any:
            decodes.append(token)
            return decode(token, *args, **kwargs)

        monkeypatch.setattr(jwt, "decode", counted)
        agent, user = uuid.uuid4(), uuid.uuid4()
        token = mint_jwt(agent, user)
        for _ in range(3):
            claims = decode_agent_jwt(token, SECRET)
            assert claims is not None and (claims.agent_id, claims.user_id) == (agent, user)
        assert decodes == [token]
        assert decode_agent_jwt(token, "another secret of at least 32 bytes") is None
        assert (
            decode_agent_jwt(mint_jwt(agent, user, "another secret, 32 bytes or more"), SECRET)
            is None
        )

    def test_a_remembered_token_is_refused_once_expired(self) -> None:
        expires = int(time.time()) + 2
        claims = {"sub": str(uuid.uuid4()), "exp": expires, "user_id": str(uuid.uuid4())}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        assert decode_agent_jwt(token, SECRET) is not None
        while time.time() < expires + 0.1:  # a bounded wait: two seconds at most
            time.sleep(0.05)
        assert decode_agent_jwt(token, SECRET) is None


class TestRegistration:
    async def test_register_then_disconnect_within_100_ms(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent_id, user_id, token = await add_agent(sessionmaker, name="old_name")
        async with open_stack(sessionmaker) as stack:
            session = library_session(stack.url, token)
            session.bind(name="Echo Agent", description="Echoes text")(handlers.echo)
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.process_events)
                await wait_active(sessionmaker, agent_id, True, within=FAST + 0.5)
                async with sessionmaker() as db:
                    agent = await AgentRepository(db).get(agent_id, owner_id=user_id)
                assert agent is not None
                assert agent.name == "echo_agent"
                assert agent.alias.startswith("echo_agent_")
                assert agent.description == "Echoes text"
                assert agent.input_parameters["function"]["description"] == "Echoes text"
                tg.cancel_scope.cancel()
            await wait_active(sessionmaker, agent_id, False, within=FAST)

    async def test_active_as_soon_as_connected(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent_id, _, token = await add_agent(sessionmaker)
        async with open_stack(sessionmaker) as stack:
            session = library_session(stack.url, token)
            session.bind(name="my_agent", description="d")(handlers.echo)
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.process_events)
                # Measured from the start of the agent's connect.
                await wait_active(sessionmaker, agent_id, True, within=FAST)
                tg.cancel_scope.cancel()

    async def test_alias_kept_while_the_name_is_unchanged(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent_id, user_id, token = await add_agent(sessionmaker, name="echo_agent")
        async with sessionmaker() as db:
            before = await AgentRepository(db).get(agent_id, owner_id=user_id)
        assert before is not None
        async with open_stack(sessionmaker) as stack:
            session = library_session(stack.url, token)
            session.bind(name="echo_agent", description="d")(handlers.echo)
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.process_events)
                await wait_active(sessionmaker, agent_id, True, within=2)
                tg.cancel_scope.cancel()
        async with sessionmaker() as db:
            after = await AgentRepository(db).get(agent_id, owner_id=user_id)
        assert after is not None and after.alias == before.alias

    async def test_flows_follow_their_agents(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent_id, user_id, token = await add_agent(sessionmaker)
        async with sessionmaker.begin() as db:
            flow = await FlowRepository(db).add(
                name="f",
                alias="f_abcdef",
                description="d",
                flow=[{"id": str(agent_id), "type": "genai"}] * 2,
                creator_id=user_id,
                is_active=False,
            )
        async with open_stack(sessionmaker) as stack:
            session = library_session(stack.url, token)
            session.bind(name="my_agent", description="d")(handlers.echo)
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.process_events)
                await wait_active(sessionmaker, agent_id, True, within=2)
                assert await flow_active(sessionmaker, flow.id)
                tg.cancel_scope.cancel()
            await wait_active(sessionmaker, agent_id, False, within=1)
            assert not await flow_active(sessionmaker, flow.id)

    async def test_startup_marks_every_agent_inactive(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent_id, _, _ = await add_agent(sessionmaker)
        async with sessionmaker.begin() as db:
            await AgentRepository(db).set_active(agent_id, True)
        async with open_stack(sessionmaker):
            # The first job of the registry's worker, queued at start so that a start
            # needs no database.
            await wait_active(sessionmaker, agent_id, False, within=10)

    async def test_a_registry_on_another_process_router_leaves_the_agents_as_they_are(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        # Agent A is connected to a router this process does not own: neither this
        # process's start nor its stop may touch its row.
        connected, _, _ = await add_agent(sessionmaker)
        async with sessionmaker.begin() as db:
            await AgentRepository(db).set_active(connected, True)
        newcomer, _, token = await add_agent(sessionmaker)
        config = RegistryConfig(SECRET, owns_router=False)
        async with open_stack(sessionmaker, config=config) as stack:
            session = library_session(stack.url, token)
            session.bind(name="my_agent", description="d")(handlers.echo)
            async with anyio.create_task_group() as tg:
                tg.start_soon(session.process_events)
                # The agent events are applied in order: once B's registration is in,
                # a start-up reset queued before it would have been too.
                await wait_active(sessionmaker, newcomer, True, within=FAST)
                assert stack.registry.statistics().pending_events == 0
                assert await is_active(sessionmaker, connected)
                tg.cancel_scope.cancel()
            await wait_active(sessionmaker, newcomer, False, within=FAST)
        assert await is_active(sessionmaker, connected)

    @pytest.mark.parametrize("problem", ["bad signature", "unknown agent", "wrong owner"])
    async def test_bad_jwt_stops_the_agent(
        self, sessionmaker: async_sessionmaker[AsyncSession], python: Path | str, problem: str
    ) -> None:
        agent_id, user_id, _ = await add_agent(sessionmaker)
        if problem == "bad signature":
            token = mint_jwt(agent_id, user_id, secret="another-secret-of-at-least-32-bytes!")
        elif problem == "unknown agent":
            token = mint_jwt(uuid.uuid4(), user_id)
        else:
            token = mint_jwt(agent_id, uuid.uuid4())
        processes: list[Process] = []
        try:
            async with open_stack(sessionmaker) as stack:
                process = await start_agent(python, "echo", stack.url, token, processes)
                with anyio.fail_after(20):
                    await process.wait()
                assert stack.registry.statistics().rejected == 1
                assert not await is_active(sessionmaker, agent_id)
        finally:
            await stop_processes(processes)


async def flow_active(sessionmaker: async_sessionmaker[AsyncSession], flow_id: uuid.UUID) -> bool:
    async with sessionmaker() as db:
        return bool(await db.scalar(select(AgentFlow.is_active).where(AgentFlow.id == flow_id)))


async def count_logs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as db:
        return int(await db.scalar(select(func.count()).select_from(Log)) or 0)


class TestLogs:
    async def test_agent_logs_are_stored_and_pushed_to_their_owner(
        self, sessionmaker: async_sessionmaker[AsyncSession], python: Path | str
    ) -> None:
        agent_id, user_id, token = await add_agent(sessionmaker)
        chat_owner = (await add_agent(sessionmaker))[1]
        sid, rid = uuid.uuid4(), uuid.uuid4()
        chat_sid = uuid.uuid4()
        await add_conversation(sessionmaker, chat_sid, chat_owner)
        sink = RecordingSink()
        processes: list[Process] = []
        try:
            async with open_stack(sessionmaker, sink=sink) as stack:
                await start_agent(python, "echo", stack.url, token, processes)
                await wait_active(sessionmaker, agent_id, True, within=20)
                reply = await invoke(stack.url, agent_id, "hi", str(sid), str(rid))
                assert reply["message_type"] == "agent_response"
                await invoke(stack.url, agent_id, "chat", str(chat_sid), str(rid))
                with anyio.fail_after(10):
                    # The sink has no change notification; poll it.
                    while len({e.session_id for e in sink.entries}) < 2:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
        finally:
            await stop_processes(processes)
        mine = [e for e in sink.entries if e.session_id == sid]
        assert "echo hi" in [e.message for e in mine]
        assert {e.creator_id for e in mine} == {user_id}
        assert {e.agent_id for e in mine} == {str(agent_id)}
        assert {e.request_id for e in mine} == {rid}
        chat = [e for e in sink.entries if e.session_id == chat_sid]
        assert {e.creator_id for e in chat} == {chat_owner}  # the conversation's owner
        async with sessionmaker() as db:
            rows = (await db.scalars(select(Log).order_by(Log.id))).all()
        assert [r.id for r in rows] == sorted(e.id for e in sink.entries)
        assert "echo hi" in [r.message for r in rows]

    async def test_a_provider_key_an_agent_logs_is_masked_before_it_is_stored_or_pushed(
        self, sessionmaker: async_sessionmaker[AsyncSession], python_109: Path
    ) -> None:
        # genai-protocol 1.0.9 logs every request payload it receives: the master's
        # carries the user's decrypted provider key in configs.api_key.
        key = "sk-proj-must-never-be-stored-0123456789"
        agent_id, _, token = await add_agent(sessionmaker)
        sid, rid = uuid.uuid4(), uuid.uuid4()
        sink = RecordingSink()
        processes: list[Process] = []
        try:
            async with open_stack(sessionmaker, sink=sink) as stack:
                await start_agent(python_109, "echo", stack.url, token, processes)
                await wait_active(sessionmaker, agent_id, True, within=20)
                configs = {"provider": "openai", "api_key": key, "max_tokens": 512}
                await invoke(stack.url, agent_id, "hi", str(sid), str(rid), configs=configs)
                with anyio.fail_after(10):
                    # The sink has no change notification; poll it.
                    while not any("request_payload" in e.message for e in sink.entries):  # noqa: ASYNC110
                        await anyio.sleep(0.01)
        finally:
            await stop_processes(processes)
        logged = next(e.message for e in sink.entries if "request_payload" in e.message)
        assert json.loads(logged)["request_payload"]["configs"] == {
            "provider": "openai",
            "api_key": "********",
            "max_tokens": 512,
        }
        async with sessionmaker() as db:
            stored = (await db.scalars(select(Log.message))).all()
        assert stored and not any(key in message for message in stored)
        assert not any(key in e.message for e in sink.entries)

    async def test_invalid_logs_are_dropped_and_counted(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, _, token = await add_agent(sessionmaker)
        async with (
            open_stack(sessionmaker) as stack,
            open_peer(stack.url, **{"X-Custom-Authorization": token}) as agent,
        ):
            good = {"session_id": str(uuid.uuid4()), "request_id": str(uuid.uuid4())}
            for fields in (
                {**good, "log_level": ""},
                {**good, "session_id": "nope"},
                {**good, "request_id": ""},
                {**good, "log_level": "info", "invoked_by": "x#1"},
            ):
                await agent.send({"message_type": "agent_log", "log_message": "m", **fields})
            await wait_stat(stack, "written", 1)
            stats = stack.registry.statistics()
        assert stats.dropped == 3
        assert await count_logs(sessionmaker) == 1

    async def test_a_flood_is_written_in_batches(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent_id, user_id, token = await add_agent(sessionmaker)
        sink = RecordingSink()
        count = 5000
        async with (
            open_stack(sessionmaker, sink=sink) as stack,
            open_peer(stack.url, **{"X-Custom-Authorization": token}) as agent,
        ):
            sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
            for n in range(count):
                await agent.send(log_frame(agent_id, sid, rid, f"line {n}"))
            await wait_stat(stack, "written", count, within=30)
            stats = stack.registry.statistics()
        assert stats.batches < count / 10
        assert await count_logs(sessionmaker) == count
        assert [e.message for e in sink.entries] == [f"line {n}" for n in range(count)]
        assert {e.creator_id for e in sink.entries} == {user_id}


class HeldSink(RecordingSink):
    """A `RecordingSink` that holds its first batch until released."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = anyio.Event()
        self.release = anyio.Event()

    async def logs_stored(self, logs: Sequence[LogEntry]) -> None:
        if not self.holding.is_set():
            self.holding.set()
            await self.release.wait()
        await super().logs_stored(logs)


class TestStop:
    async def test_logs_buffered_at_stop_are_stored_and_pushed(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        agent_id, user_id, _ = await add_agent(sessionmaker)
        sink = HeldSink()
        sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
        count, batch = 1000, 100
        spec = registry_spec(
            RegistryConfig(SECRET, batch_size=batch), sessionmaker, session=None, sink=sink
        )

        async def release_when_stopping() -> None:
            await wait_for_state(system, "registry", ActorState.STOPPING, 10)
            sink.release.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg, open_actor_system(spec) as system:
                ref = system.ref_of("registry")
                for n in range(count):
                    await ref.tell(AgentLogged(str(agent_id), sid, rid, "info", f"line {n}"))
                await sink.holding.wait()
                # The writer is held after its first batch: the rest is buffered.
                stats = await RegistryClient(ref).statistics()
                assert stats.written <= batch
                assert stats.buffered == count - stats.written
                tg.start_soon(release_when_stopping)
        assert [e.message for e in sink.entries] == [f"line {n}" for n in range(count)]
        assert {e.creator_id for e in sink.entries} == {user_id}
        assert await count_logs(sessionmaker) == count


def log_frame(agent_id: uuid.UUID, sid: str, rid: str, text: str) -> dict[str, Any]:
    """An ``agent_log`` frame as a 2.x agent sends it (PROTOCOL.md §2.5)."""
    return {
        "message_type": "agent_log",
        "log_message": text,
        "log_level": "info",
        "agent_uuid": str(agent_id),
        "request_id": rid,
        "session_id": sid,
        "invoked_by": "caller#1",
    }
