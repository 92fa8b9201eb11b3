"""Chat turns through the whole path: the front-end socket, the chat actor, the router
session, the embedded router, a scripted 1.0.9 master and real 2.0.3 / 1.0.9 agents."""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
from websockets.asyncio.client import connect

from actors.router import MASTER_SERVER_ML

from .conftest import open_backend

if TYPE_CHECKING:
    from pathlib import Path

    from anyio.abc import Process

    from web import Settings

    from .conftest import Backend

FILE_DTO_KEYS = {
    "id",
    "session_id",
    "request_id",
    "original_name",
    "mimetype",
    "internal_id",
    "internal_name",
    "from_agent",
    "creator_id",
}
LOG_KEYS = {
    "session_id",
    "request_id",
    "log_level",
    "message",
    "creator_id",
    "agent_id",
    "created_at",
    "updated_at",
}


def assert_response_shape(frame: dict[str, Any], session_id: str) -> dict[str, Any]:
    """Check ENDPOINTS.md §9's ``agent_response`` shape; return its inner response."""
    assert set(frame) == {"type", "response"}, frame
    assert frame["type"] == "agent_response"
    body = frame["response"]
    assert set(body) == {"execution_time", "response", "request_id", "session_id", "files"}
    assert isinstance(body["execution_time"], float | int)
    assert body["session_id"] == session_id
    uuid.UUID(body["request_id"])
    assert isinstance(body["files"], list)
    for file in body["files"]:
        assert set(file) == FILE_DTO_KEYS
    inner: dict[str, Any] = body["response"]
    assert set(inner) == {"response", "agents_trace", "is_success"}
    assert isinstance(inner["agents_trace"], list)
    return inner


class TestFullTurn:
    async def test_a_turn_reaches_real_agents_and_comes_back_with_their_logs(
        self,
        backend: Backend,
        processes: list[Process],
        python_109: Path,
    ) -> None:
        owner = await backend.user()
        stranger = await backend.user()
        await backend.add_model(owner)
        agent_203 = await backend.agent(owner, "echo new")
        agent_109 = await backend.agent(owner, "echo old")
        await backend.start_agent(sys.executable, agent_203, processes)
        await backend.start_agent(python_109, agent_109, processes)
        await backend.start_master(python_109, processes)
        session_id = str(uuid.uuid4())

        async with (
            backend.frontend(stranger) as other,
            backend.frontend(owner, session_id) as ui,
        ):
            await ui.say("hello agents")
            frame = await ui.response(within=15)
            inner = assert_response_shape(frame, session_id)
            assert inner["is_success"] is True, inner
            summary = json.loads(inner["response"])
            # The master read the stored user turn and the owner's two active agents.
            assert summary["history"] == ["user"]
            assert summary["config"] == "gpt"
            assert summary["agents"] == 2
            versions = sorted(output["version"][0] for output in summary["outputs"])
            assert versions == ["1", "2"]
            assert all(output["text"] == "hello agents" for output in summary["outputs"])
            calls = [step for step in inner["agents_trace"] if step.get("type") == "genai"]
            assert {step["id"] for step in calls} == {agent_203.id, agent_109.id}
            assert all(step["is_success"] for step in calls)
            request_id = frame["response"]["request_id"]

            # Both agents' logs reach the owner's socket (1.0.9 may send them late).
            def has_both(logs: list[dict[str, Any]]) -> bool:
                echoed = {
                    log["log"]["agent_id"]
                    for log in logs
                    if log["log"]["message"] == "echo hello agents"
                }
                return {agent_203.id, agent_109.id} <= echoed

            await ui.wait_logs(has_both)
            for log in ui.logs:
                assert set(log) == {"type", "log"}
                assert set(log["log"]) == LOG_KEYS
                assert log["log"]["session_id"] == session_id
                assert log["log"]["request_id"] == request_id
                assert log["log"]["creator_id"] == owner.id
            # The other user's socket gets none of it.
            assert await other.silent_for(0.3) == []

            history = await backend.history(owner, session_id)
            assert [item["sender_type"] for item in history] == ["master_agent", "user"]
            assert history[1]["content"] == "hello agents"
            assert json.loads(history[0]["content"]) == inner

            # A second turn sees the first one in the history.
            await ui.say("again")
            inner = assert_response_shape(await ui.response(within=15), session_id)
            assert json.loads(inner["response"])["history"] == [
                "user",
                "master_agent",
                "user",
            ]


class TestMasterFailures:
    async def test_no_master_gives_an_error_reply_at_once(self, backend: Backend) -> None:
        owner = await backend.user()
        await backend.add_model(owner)
        session_id = str(uuid.uuid4())
        async with backend.frontend(owner, session_id) as ui:
            started = time.perf_counter()
            await ui.say("anyone there?")
            inner = assert_response_shape(await ui.response(within=5), session_id)
            assert time.perf_counter() - started < 2
        assert inner == {"response": "Agent is NOT active", "agents_trace": [], "is_success": False}
        history = await backend.history(owner, session_id)
        assert [item["sender_type"] for item in history] == ["master_agent", "user"]
        assert json.loads(history[0]["content"]) == inner

    async def test_a_slow_master_gets_the_deadline_reply(
        self,
        tmp_path: Path,
        database_url: str,
        processes: list[Process],
        python_109: Path,
    ) -> None:
        from .conftest import make_settings

        settings: Settings = make_settings(tmp_path, MASTER_AGENT_TIMEOUT=0.5)
        async with open_backend(settings, database_url) as backend:
            await backend.wait_session()
            owner = await backend.user()
            await backend.add_model(owner)
            await backend.start_master(python_109, processes)
            session_id = str(uuid.uuid4())
            async with backend.frontend(owner, session_id) as ui:
                started = time.perf_counter()
                await ui.say("sleep 5")
                inner = assert_response_shape(await ui.response(within=5), session_id)
                elapsed = time.perf_counter() - started
                assert inner == {
                    "response": "Master agent did not answer within 0.5 s",
                    "agents_trace": [],
                    "is_success": False,
                }
                assert 0.5 <= elapsed < 1.5
                # The master is still there: a quick turn works on the same socket.
                await ui.say("quick")
                inner = assert_response_shape(await ui.response(within=5), session_id)
                assert inner["is_success"] is True
            assert backend.table().conn_id_of(MASTER_SERVER_ML) is not None


class TestSlowTurn:
    async def test_a_second_socket_and_a_reconnect_are_served_while_a_turn_waits(
        self, backend: Backend, processes: list[Process], python_109: Path
    ) -> None:
        owner = await backend.user()
        await backend.add_model(owner)
        await backend.start_master(python_109, processes)
        session_id = str(uuid.uuid4())
        async with backend.frontend(owner, session_id) as first:
            await first.say("sleep 5")
            with anyio.fail_after(5):
                while (await backend.table_stats()).pending_invocations < 1:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            async with backend.frontend(owner, session_id) as second:
                # An invalid frame is answered only once the socket is subscribed: at once,
                # not when the turn ends.
                await second.ws.send("{}")
                assert (await second.next(within=2))["type"] == "error"
                await first.ws.close()
                async with backend.frontend(owner, session_id) as again:
                    await again.ws.send("{}")
                    assert (await again.next(within=2))["type"] == "error"
                    answers = [await ui.response(within=15) for ui in (second, again)]
        assert answers[0] == answers[1]
        inner = assert_response_shape(answers[0], session_id)
        assert inner["is_success"] is True, inner


class TestPool:
    async def test_turns_with_files_on_a_pool_of_two_are_all_answered(
        self, tmp_path: Path, database_url: str
    ) -> None:
        from persistence import DatabaseSettings, FileRepository
        from web._server import open_server

        from ..faults.conftest import make_world, open_master, open_sessionmaker
        from .conftest import make_settings

        settings: Settings = make_settings(tmp_path)
        db = DatabaseSettings(
            DATABASE_URL=database_url, DATABASE_POOL_SIZE=2, DATABASE_MAX_OVERFLOW=0
        )
        async with (
            open_server(settings, db) as server,
            open_sessionmaker(database_url) as sessionmaker,
            open_master(server.router_url, settings.MASTER_AGENT_API_KEY) as master,
        ):
            master.release("*")
            host, port = server.http_addresses[0]
            world = await make_world(f"http://{host}:{port}", settings, sessionmaker)
            async with sessionmaker.begin() as session:
                files = [
                    await FileRepository(session).add(
                        creator_id=world.user_id,
                        mimetype="text/plain",
                        original_name=f"{n}.txt",
                        internal_name=f"{n}.txt",
                        from_agent=False,
                    )
                    for n in range(20)
                ]
            answers: list[dict[str, Any]] = []

            async def turn(file_id: uuid.UUID) -> None:
                async with connect(world.ws_url(uuid.uuid4())) as ws:
                    message = {"message": "x", "llm_name": "gpt", "files": [str(file_id)]}
                    await ws.send(json.dumps(message))
                    # Far below the pool's 30-s timeout, which a turn holding one
                    # connection while it waits for another would run into.
                    with anyio.fail_after(20):
                        answers.append(json.loads(await ws.recv()))

            async with anyio.create_task_group() as tg:
                for file in files:
                    tg.start_soon(turn, file.id)
        assert len(answers) == 20
        assert all(a["response"]["response"]["is_success"] for a in answers), answers
