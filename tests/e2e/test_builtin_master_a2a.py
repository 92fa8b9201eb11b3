"""The built-in master calling A2A agents, through the whole path: the real front-end
socket, the chat actor, the router session, the embedded router, the built-in master, a
real A2A agent (the ``a2a-sdk`` server) on loopback, and the scripted OpenAI-compatible
server as the user's model provider choosing the agent.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from ..actors.master.a2a_agent import PlanningAgent, a2a_agent_app
from ..actors.master.fake_openai import Reply, text, tool_call
from ..actors.tools.servers import ThreadServer, free_port
from .test_builtin_master import (
    Model,
    _builtin,  # noqa: F401 (the fixture)
    _fake,  # noqa: F401 (the fixture)
    _model,  # noqa: F401 (the fixture)
    add_model,
    call_then_answer,
    last_role,
    tool_named,
)
from .test_chat import assert_response_shape

if TYPE_CHECKING:
    from ..actors.master.fake_openai import FakeOpenAI
    from .conftest import Backend, User


def start_agent(agent: PlanningAgent, name: str = "Travel Agent") -> ThreadServer:
    port = free_port()
    return ThreadServer(
        lambda: a2a_agent_app(f"http://127.0.0.1:{port}/", agent, name), port=port
    ).start()


async def add_agent(backend: Backend, user: User, url: str) -> dict[str, Any]:
    response = await backend.http.post(
        "/api/a2a/agents", json={"server_url": url}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    card: dict[str, Any] = response.json()
    return card


async def turn(backend: Backend, user: User, message: str) -> dict[str, Any]:
    session_id = str(uuid.uuid4())
    async with backend.frontend(user, session_id) as ui:
        await ui.say(message)
        inner = assert_response_shape(await ui.response(within=20), session_id)
    history = await backend.history(user, session_id)
    assert [item["sender_type"] for item in history] == ["master_agent", "user"]
    return inner


class TestA2AAgents:
    async def test_a_turn_calls_an_a2a_agent_and_answers_with_its_reply(
        self, builtin: Backend, fake: FakeOpenAI, model: Model
    ) -> None:
        owner = await builtin.user()
        await add_model(builtin, owner, fake.base_url)
        agent = PlanningAgent("Travel")
        server = start_agent(agent)
        try:
            card = await add_agent(builtin, owner, server.url)
            model.respond = call_then_answer("Travel_Agent", {"task": "Plan", "text": "Paris"})
            inner = await turn(builtin, owner, "plan my trip")
        finally:
            server.stop()
        assert inner["is_success"] is True, inner
        assert "Travel planned: Plan\\nParis" in inner["response"]
        assert agent.received == ["Plan\nParis"]
        steps = inner["agents_trace"]
        assert [step["name"] for step in steps] == ["MasterAgent", "Travel_Agent", "MasterAgent"]
        call = steps[1]
        assert (call["id"], call["type"], call["url"]) == (card["id"], "a2a", server.url + "/")
        assert call["input"] == "Plan\nParis"
        assert call["output"] == "Travel planned: Plan\nParis"
        assert call["is_success"] is True
        assert isinstance(call["execution_time"], float)
        # The model saw the agent by its alias: a task and a text, its skills described.
        [tool] = [t["function"] for t in fake.requests[0]["tools"]]
        assert tool["name"] == card["alias"]
        assert tool["parameters"]["required"] == ["task", "text"]
        assert "Plans a trip to a city" in tool["description"]

    async def test_a_flow_of_a2a_agents_runs_them_in_order(
        self, builtin: Backend, fake: FakeOpenAI, model: Model
    ) -> None:
        owner = await builtin.user()
        await add_model(builtin, owner, fake.base_url)
        first_agent, second_agent = PlanningAgent("First"), PlanningAgent("Second")
        first_server = start_agent(first_agent, "Flights")
        second_server = start_agent(second_agent, "Hotels")
        try:
            first = await add_agent(builtin, owner, first_server.url)
            second = await add_agent(builtin, owner, second_server.url)
            response = await builtin.http.post(
                "/api/agentflows/register",
                json={
                    "name": "trip",
                    "description": "flights then hotels",
                    "flow": [
                        {"id": first["id"], "type": "a2a"},
                        {"id": second["id"], "type": "a2a"},
                    ],
                },
                headers=owner.headers,
            )
            assert response.status_code == 200, response.text

            def respond(request: dict[str, Any]) -> Reply:
                if "tool_choice" in request:  # the flow's next member, forced
                    name = request["tool_choice"]["function"]["name"]
                    return tool_call(name, {"task": "Book", "text": "a hotel"})
                if last_role(request) == "tool":
                    return text(f"trip done: {request['messages'][-1]['content']}")
                return tool_call(tool_named(request, "trip"), {"task": "Fly", "text": "to Rome"})

            model.respond = respond
            inner = await turn(builtin, owner, "plan the trip")
        finally:
            first_server.stop()
            second_server.stop()
        assert inner["is_success"] is True, inner
        assert first_agent.received == ["Fly\nto Rome"]
        assert second_agent.received == ["Book\na hotel"]
        flow = inner["agents_trace"][1]
        assert (flow["type"], flow["is_success"]) == ("flow", True)
        members = [step for step in flow["flow"] if step.get("type") == "a2a"]
        assert [(m["id"], m["output"]) for m in members] == [
            (first["id"], "First planned: Fly\nto Rome"),
            (second["id"], "Second planned: Book\na hotel"),
        ]
        assert "Second planned: Book" in inner["response"]

    async def test_each_failure_is_answered_with_what_to_do(
        self, builtin: Backend, fake: FakeOpenAI, model: Model
    ) -> None:
        owner = await builtin.user()
        await add_model(builtin, owner, fake.base_url)
        agent = PlanningAgent("Travel")
        server = start_agent(agent)
        try:
            await add_agent(builtin, owner, server.url)
            cases = [
                ("fail", "The agent Travel_Agent failed: no flights to the moon"),
                # MASTER_TOOL_TIMEOUT is 3 s in these tests.
                ("slow", "The agent Travel_Agent did not answer within 3 s"),
            ]
            for task, expected in cases:
                model.respond = call_then_answer("Travel_Agent", {"task": task, "text": "Moon"})
                inner = await turn(builtin, owner, f"try {task}")
                assert inner["is_success"] is False, inner
                assert inner["response"].startswith(expected), inner["response"]
                call = inner["agents_trace"][1]
                assert (call["type"], call["is_success"]) == ("a2a", False)
        finally:
            server.stop()
        # An agent that went away (the refresher has not noticed yet: still listed).
        model.respond = call_then_answer("Travel_Agent", {"task": "Plan", "text": "Paris"})
        inner = await turn(builtin, owner, "plan again")
        assert inner["is_success"] is False, inner
        assert "cannot be reached" in inner["response"]
        assert "check that it is running" in inner["response"]
