"""The built-in master agent through the whole path: the real front-end socket, the chat
actor, the router session, the embedded router, the built-in master, real 2.0.3 agents,
and a scripted OpenAI-compatible server on loopback as the user's model provider.

And the original master (a scripted 1.0.9 router client with the master's API key)
still answering when ``MASTER_AGENT=external``.
"""

from __future__ import annotations

import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from actors.router import MASTER_SERVER_ML

from ..actors.master.fake_openai import HANG, Reply, error, open_fake_openai, text, tool_call
from ..actors.tools.servers import ThreadServer, mcp_app
from .conftest import make_settings, open_backend
from .test_chat import assert_response_shape

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from anyio.abc import Process

    from ..actors.master.fake_openai import FakeOpenAI
    from .conftest import Backend, RegisteredAgent, User


class Model:
    """The fake provider's script, set by each test: request body → reply."""

    def __init__(self) -> None:
        self.respond: Callable[[dict[str, Any]], Reply] = lambda _request: text("hello")

    def __call__(self, request: dict[str, Any]) -> Reply:
        return self.respond(request)


@pytest.fixture(name="model")
def _model() -> Model:
    return Model()


@pytest.fixture(name="fake")
async def _fake(model: Model) -> AsyncIterator[FakeOpenAI]:
    async with open_fake_openai(model) as fake:
        yield fake


@pytest.fixture(name="builtin")
async def _builtin(tmp_path: Path, database_url: str) -> AsyncIterator[Backend]:
    settings = make_settings(
        tmp_path,
        MASTER_AGENT="builtin",
        MASTER_MODEL_TIMEOUT=1.0,
        MASTER_TOOL_TIMEOUT=3.0,
        MASTER_AGENT_TIMEOUT=20.0,
    )
    async with open_backend(settings, database_url) as backend:
        await backend.wait_session()
        await backend.wait_connected(MASTER_SERVER_ML)
        yield backend


async def add_model(backend: Backend, user: User, base_url: str) -> None:
    """An ``openai`` provider pointed at the fake server, and a config, as the UI makes them."""
    response = await backend.http.post(
        "/api/llm/model/provider",
        json={"name": "openai", "api_key": "sk-test", "metadata": {"base_url": base_url}},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    response = await backend.http.post(
        "/api/llm/model/config",
        json={"name": "gpt", "model": "fake-model", "provider": "openai", "system_prompt": ""},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text


def tool_named(request: dict[str, Any], prefix: str) -> str:
    names: list[str] = [tool["function"]["name"] for tool in request.get("tools", [])]
    matching = [name for name in names if name.startswith(prefix)]
    assert matching, names
    return matching[0]


def last_role(request: dict[str, Any]) -> str:
    role: str = request["messages"][-1]["role"]
    return role


def call_then_answer(prefix: str, arguments: dict[str, Any]) -> Callable[[dict[str, Any]], Reply]:
    """Call the tool named ``prefix…``, then answer with what it returned."""

    def respond(request: dict[str, Any]) -> Reply:
        if last_role(request) == "tool":
            return text(f"The agent said: {request['messages'][-1]['content']}")
        return tool_call(tool_named(request, prefix), arguments)

    return respond


async def running_agent(
    backend: Backend, user: User, processes: list[Process], name: str = "echo"
) -> RegisteredAgent:
    agent = await backend.agent(user, name)
    await backend.start_agent(sys.executable, agent, processes)
    # Registration reaches the database through the registry; the tool list reads it.
    with anyio.fail_after(15):
        while agent.id not in await backend.active_ids(user):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return agent


class TestTurns:
    async def test_a_turn_calls_an_agent_and_answers_with_its_output(
        self, builtin: Backend, fake: FakeOpenAI, model: Model, processes: list[Process]
    ) -> None:
        owner = await builtin.user()
        await add_model(builtin, owner, fake.base_url)
        agent = await running_agent(builtin, owner, processes)
        model.respond = call_then_answer("echo_agent", {"text": "hello there"})
        session_id = str(uuid.uuid4())
        async with builtin.frontend(owner, session_id) as ui:
            await ui.say("please echo")
            frame = await ui.response(within=15)
            inner = assert_response_shape(frame, session_id)
            assert inner["is_success"] is True, inner
            assert inner["response"].startswith("The agent said: ")
            assert "hello there" in inner["response"]
            request_id = frame["response"]["request_id"]

            # The trace, in the shape the trace page reads.
            steps = inner["agents_trace"]
            assert [step["name"] for step in steps] == ["MasterAgent", "echo_agent", "MasterAgent"]
            call = steps[1]
            assert call["id"] == agent.id
            assert call["type"] == "genai"
            assert call["input"] == {"text": "hello there"}
            assert call["output"]["text"] == "hello there"
            assert call["is_success"] is True
            assert steps[0]["output"]["tool_calls"][0]["function"]["name"].startswith("echo_")
            assert all(isinstance(step["execution_time"], float) for step in steps)

            # The agent's logs came under the request: live on the socket, and stored.
            await ui.wait_logs(
                lambda logs: any(log["log"]["message"] == "echo hello there" for log in logs)
            )
            assert {log["log"]["request_id"] for log in ui.logs} == {request_id}
            with anyio.fail_after(10):
                while True:
                    response = await builtin.http.get(
                        "/api/logs/list", params={"request_id": request_id}, headers=owner.headers
                    )
                    assert response.status_code == 200, response.text
                    if any(log["message"] == "echo hello there" for log in response.json()):
                        break
                    await anyio.sleep(0.05)

            # The model saw our default prompt, the user's message and the agent as a tool.
            first = fake.requests[0]
            assert first["messages"][0]["role"] == "system"
            assert first["messages"][0]["content"]
            assert first["messages"][-1] == {"role": "user", "content": "please echo"}
            assert fake.headers[0]["authorization"] == "Bearer sk-test"

            # A second turn sees the first in the history.
            model.respond = lambda _request: text("again")
            await ui.say("and now?")
            inner = assert_response_shape(await ui.response(within=15), session_id)
            assert inner["response"] == "again"
            roles = [m["role"] for m in fake.requests[-1]["messages"]]
            assert roles == ["system", "user", "assistant", "user"]
            assert fake.requests[-1]["messages"][2]["content"].startswith("The agent said: ")

        history = await builtin.history(owner, session_id)
        assert [item["sender_type"] for item in history] == [
            "master_agent",
            "user",
            "master_agent",
            "user",
        ]
        assert json.loads(history[0]["content"]) == inner

    async def test_a_flow_runs_its_agents_in_order(
        self, builtin: Backend, fake: FakeOpenAI, model: Model, processes: list[Process]
    ) -> None:
        owner = await builtin.user()
        await add_model(builtin, owner, fake.base_url)
        first = await running_agent(builtin, owner, processes, "first echo")
        second = await running_agent(builtin, owner, processes, "second echo")
        response = await builtin.http.post(
            "/api/agentflows/register",
            json={
                "name": "two echoes",
                "description": "echo twice",
                "flow": [{"id": first.id, "type": "genai"}, {"id": second.id, "type": "genai"}],
            },
            headers=owner.headers,
        )
        assert response.status_code == 200, response.text
        flow_id = response.json()["id"]

        def respond(request: dict[str, Any]) -> Reply:
            if "tool_choice" in request:  # the flow's next member, forced
                return tool_call(request["tool_choice"]["function"]["name"], {"text": "two"})
            if last_role(request) == "tool":
                return text(f"flow done: {request['messages'][-1]['content']}")
            return tool_call(tool_named(request, "two_echoes"), {"text": "one"})

        model.respond = respond
        session_id = str(uuid.uuid4())
        async with builtin.frontend(owner, session_id) as ui:
            await ui.say("run the flow")
            inner = assert_response_shape(await ui.response(within=20), session_id)
        assert inner["is_success"] is True, inner
        assert '"text": "two"' in inner["response"]
        flow = inner["agents_trace"][1]
        assert (flow["id"], flow["type"], flow["is_success"]) == (flow_id, "flow", True)
        members = [step for step in flow["flow"] if step.get("type") == "genai"]
        assert [(m["id"], m["input"]["text"]) for m in members] == [
            (first.id, "one"),
            (second.id, "two"),
        ]
        assert [m["output"]["text"] for m in members] == ["one", "two"]
        # The second member was asked for with only its own tool, forced.
        forced = [r for r in fake.requests if "tool_choice" in r]
        assert len(forced) == 1
        assert [t["function"]["name"] for t in forced[0]["tools"]] == [
            forced[0]["tool_choice"]["function"]["name"]
        ]


class TestMcpTools:
    async def test_a_turn_calls_a_tool_of_an_mcp_server(
        self, builtin: Backend, fake: FakeOpenAI, model: Model
    ) -> None:
        owner = await builtin.user()
        await add_model(builtin, owner, fake.base_url)
        server = ThreadServer(mcp_app).start()
        try:
            url = f"{server.url}/mcp"
            response = await builtin.http.post(
                "/api/mcp/servers", json={"server_url": url}, headers=owner.headers
            )
            assert response.status_code == 200, response.text
            model.respond = call_then_answer("echo", {"text": "from mcp"})
            session_id = str(uuid.uuid4())
            async with builtin.frontend(owner, session_id) as ui:
                await ui.say("use the tool")
                inner = assert_response_shape(await ui.response(within=20), session_id)
        finally:
            server.stop()
        assert inner["is_success"] is True, inner
        assert "from mcp" in inner["response"]
        call = inner["agents_trace"][1]
        assert (call["type"], call["url"], call["name"]) == ("mcp", url, "echo")
        assert call["input"] == {"text": "from mcp"}
        assert call["is_success"] is True
        # The model saw both tools of the server, by their aliases, with their schemas.
        tools = {t["function"]["name"]: t["function"] for t in fake.requests[0]["tools"]}
        echo = next(f for name, f in tools.items() if name.startswith("echo"))
        assert echo["parameters"]["properties"]["text"]["type"] == "string"
        assert any(name.startswith("add") for name in tools)


class TestErrors:
    @pytest.mark.parametrize(
        ("respond", "expected"),
        [
            (
                lambda request: tool_call(tool_named(request, "echo_agent"), "{not json"),
                "with arguments that are not a JSON object",
            ),
            (lambda _request: error(401, "Incorrect API key"), "refused the API key (401)"),
            (lambda _request: error(429, "Slow down"), "rate limiting requests (429)"),
            (lambda _request: HANG, "did not answer within 1 s"),
            (
                lambda _request: tool_call("absent_agent_abcdef", {"text": "x"}),
                "called a tool that does not exist ('absent_agent_abcdef')",
            ),
            (
                lambda request: tool_call(tool_named(request, "echo_agent"), {"wrong": 1}),
                "The agent echo_agent failed: ",
            ),
            (
                lambda request: tool_call(
                    tool_named(request, "echo_agent"), {"text": "x", "delay": 10}
                ),
                "The agent echo_agent did not answer within 3 s",
            ),
        ],
        ids=[
            "malformed arguments",
            "401",
            "429",
            "hang",
            "absent agent",
            "failing agent",
            "late agent",
        ],
    )
    async def test_each_error_is_answered_and_stored(
        self,
        builtin: Backend,
        fake: FakeOpenAI,
        model: Model,
        processes: list[Process],
        respond: Callable[[dict[str, Any]], Reply],
        expected: str,
    ) -> None:
        owner = await builtin.user()
        await add_model(builtin, owner, fake.base_url)
        await running_agent(builtin, owner, processes)
        model.respond = respond
        session_id = str(uuid.uuid4())
        async with builtin.frontend(owner, session_id) as ui:
            await ui.say("go")
            inner = assert_response_shape(await ui.response(within=15), session_id)
        assert inner["is_success"] is False
        assert expected in inner["response"], inner["response"]
        assert inner["agents_trace"][-1] == {
            "name": "MasterAgent",
            "output": inner["response"],
            "is_success": False,
        }
        history = await builtin.history(owner, session_id)
        assert [item["sender_type"] for item in history] == ["master_agent", "user"]
        assert json.loads(history[0]["content"]) == inner

    async def test_a_provider_it_does_not_speak_is_named(
        self, builtin: Backend, fake: FakeOpenAI
    ) -> None:
        owner = await builtin.user()
        await builtin.add_model(owner, provider="anthropic")
        session_id = str(uuid.uuid4())
        async with builtin.frontend(owner, session_id) as ui:
            await ui.say("hello", provider="anthropic")
            inner = assert_response_shape(await ui.response(within=15), session_id)
        assert inner["is_success"] is False
        assert "'anthropic' is none of them" in inner["response"]
        assert fake.requests == []


class TestExternalMaster:
    async def test_the_original_master_answers_when_external_is_chosen(
        self,
        tmp_path: Path,
        database_url: str,
        processes: list[Process],
        python_109: Path,
    ) -> None:
        settings = make_settings(tmp_path, MASTER_AGENT="external")
        async with open_backend(settings, database_url) as backend:
            await backend.wait_session()
            assert backend.server.system.snapshot().find("router.master") is None
            owner = await backend.user()
            await backend.add_model(owner)
            await backend.start_master(python_109, processes)
            session_id = str(uuid.uuid4())
            async with backend.frontend(owner, session_id) as ui:
                await ui.say("hello")
                inner = assert_response_shape(await ui.response(within=15), session_id)
        assert inner["is_success"] is True, inner
        assert json.loads(inner["response"])["history"] == ["user"]

    async def test_an_external_master_that_connects_takes_the_turns_over(
        self, builtin: Backend, processes: list[Process], python_109: Path
    ) -> None:
        owner = await builtin.user()
        await builtin.add_model(owner)
        ours = builtin.table().conn_id_of(MASTER_SERVER_ML)
        await builtin.start_master(python_109, processes)
        with anyio.fail_after(15):
            # The routing table has no change notification; poll it.
            while builtin.table().conn_id_of(MASTER_SERVER_ML) == ours:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        session_id = str(uuid.uuid4())
        async with builtin.frontend(owner, session_id) as ui:
            await ui.say("hello")
            inner = assert_response_shape(await ui.response(within=15), session_id)
        assert inner["is_success"] is True, inner
        assert json.loads(inner["response"])["config"] == "gpt"
