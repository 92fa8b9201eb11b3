"""A body's schema (422) is checked before the 400s about what it says, on every route
that answers both: a client sending a malformed body gets the validation errors.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from quart.testing import QuartClient

from .conftest import Agents, LoggedIn, Users
from .test_llm import add_provider

# A first-release client's flow: wrong field names, items of the older form with no id.
MISNAMED_FLOW = {
    "agent_name": "flow",
    "agent_description": "a flow",
    "flow": [{"agent_id": None}, {"agent_id": None}],
}


def missing(field: str, body: Any) -> dict[str, Any]:
    return {"type": "missing", "loc": ["body", field], "msg": "Field required", "input": body}


def not_an_item(index: int, value: Any) -> dict[str, Any]:
    return {
        "type": "model_type",
        "loc": ["body", "flow", index],
        "msg": "Input should be a valid dictionary or instance of FlowItem",
        "input": value,
        "ctx": {"class_name": "FlowItem"},
    }


async def flow_id(client: QuartClient, user: LoggedIn, agents: Agents) -> str:
    one = await agents.register(user, active=True)
    two = await agents.register(user, active=True)
    body = {
        "name": "f",
        "description": "d",
        "flow": [{"id": one["id"], "type": "genai"}, {"id": two["id"], "type": "genai"}],
    }
    response = await client.post("/api/agentflows/register", json=body, headers=user.headers)
    assert response.status_code == 200, await response.get_data()
    return str((await response.get_json())["id"])


class TestFlowBodies:
    async def test_the_schema_comes_before_the_item_checks(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        existing = await flow_id(client, user, agents)
        bad_items = {"name": "n", "flow": ["x", 5]}
        too_long = {"name": "n" * 60, "description": "d", "flow": [{"id": "x"}, {}]}
        cases = [
            (
                MISNAMED_FLOW,
                [missing("name", MISNAMED_FLOW), missing("description", MISNAMED_FLOW)],
            ),
            (
                bad_items,
                [missing("description", bad_items), not_an_item(0, "x"), not_an_item(1, 5)],
            ),
            (
                too_long,
                [
                    {
                        "type": "value_error",
                        "loc": ["body", "name"],
                        "msg": "Value error, Flow name must be less than 55 characters",
                        "input": "n" * 60,
                        "ctx": {"error": {}},
                    }
                ],
            ),
        ]
        for path in (
            "/api/agentflows/register",
            "/api/agentflows/register-flow",
            f"/api/agentflows/{existing}",
        ):
            send = client.patch if path.endswith(existing) else client.post
            for body, errors in cases:
                response = await send(path, json=body, headers=user.headers)
                assert response.status_code == 422, (path, body, await response.get_data())
                assert await response.get_json() == {"detail": errors}

    async def test_a_body_that_passes_the_schema_gets_the_400s_in_order(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        one = await agents.register(user, active=True)
        good = {"id": one["id"], "type": "genai"}
        cases = [
            # The items first, then the empty name, then the empty description.
            ({"name": "", "description": "", "flow": [good, {"agent_id": None}]}, "Agent ID"),
            ({"name": "", "description": "", "flow": [good, {"id": one["id"]}]}, "Agent type"),
            ({"name": "", "description": "", "flow": [good, good]}, "'name'"),
            ({"name": "n", "description": "", "flow": [good, good]}, "'description'"),
            ({"name": "n", "description": "d", "flow": [good, {"id": str(uuid4())}]}, "Agent type"),
        ]
        for body, start in cases:
            response = await client.post(
                "/api/agentflows/register", json=body, headers=user.headers
            )
            assert response.status_code == 400, body
            assert (await response.get_json())["detail"].startswith(start), body


class TestOtherRoutes:
    """The other routes whose 400s depend on the body (or query) check its schema first."""

    async def test_every_route_with_both(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        await add_provider(client, user)
        session_id = str(uuid4())
        created = await client.post(
            "/api/chats", json={"session_id": session_id, "title": "t"}, headers=user.headers
        )
        assert created.status_code == 200
        cases: list[tuple[str, str, dict[str, Any]]] = [
            # 400 "Parameter 'id' must be a valid uuid" once the body is whole.
            ("POST", "/api/agents/register", {"json": {"id": "bad", "description": "d"}}),
            # 400 "Chat with Session_id ... already exists" once the title is valid.
            ("POST", "/api/chats", {"json": {"session_id": session_id, "title": ""}}),
            # 400 "Chat with session_id ... does not exist" once the title is valid.
            ("PATCH", f"/api/chat?session_id={uuid4()}", {"json": {"title": ""}}),
            # 400 "Creator_id, name ... already exists" once the key rule holds.
            ("POST", "/api/llm/model/provider", {"json": {"name": "openai", "api_key": ""}}),
            # 400 "Provider named ... does not exist" once no extra key is sent.
            (
                "POST",
                "/api/llm/model/config",
                {"json": {"name": "c", "model": "m", "provider": "nope", "extra": 1}},
            ),
            # 400 "Config with id ... was not found" once the range holds.
            (
                "PATCH",
                f"/api/llm/model/config/{uuid4()}",
                {"json": {"max_last_messages": 99}},
            ),
            # 400 "Profile with of user with id ... was not found" once the body is valid.
            ("PATCH", f"/api/profiles/{uuid4()}", {"json": {"first_name": 5}}),
            # 400 "Only 'request_id' or 'session_id' ..." once both are UUIDs.
            ("GET", f"/api/logs/list?request_id=x&session_id={uuid4()}", {}),
        ]
        for method, path, kwargs in cases:
            response = await client.open(path, method=method, headers=user.headers, **kwargs)
            assert response.status_code == 422, (method, path, await response.get_data())
