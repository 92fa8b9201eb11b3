"""Agents, agent flows and the active list (MCP and A2A: tests/web/test_mcp.py, test_a2a.py)."""

from __future__ import annotations

from uuid import UUID, uuid4

import jwt
from quart.testing import QuartClient

from web import Settings

from .conftest import Agents, Users

MASTER = {"X-API-KEY": Settings().MASTER_BE_API_KEY}


class TestRegisterAgent:
    async def test_success(self, client: QuartClient, users: Users, settings: Settings) -> None:
        user = await users.login()
        agent_id = uuid4()
        response = await client.post(
            "/api/agents/register",
            json={
                "id": str(agent_id).upper(),
                "name": "My Agent Name",
                "description": "d",
                "input_parameters": {},
                "is_active": True,
            },
            headers=user.headers,
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert set(body) == {
            "id",
            "name",
            "alias",
            "description",
            "input_parameters",
            "jwt",
            "created_at",
            "updated_at",
        }
        assert body["id"] == str(agent_id)
        assert body["name"] == "my_agent_name"
        assert body["alias"].startswith("my_agent_name_") and len(body["alias"]) == 20
        assert body["alias"][-6:].isalpha() and body["alias"][-6:].islower()
        claims = jwt.decode(body["jwt"], settings.JWT_SECRET_KEY, algorithms=["HS256"])
        assert claims == {"sub": str(agent_id), "exp": 253402300799, "user_id": str(user.id)}

    async def test_id_errors(self, client: QuartClient, users: Users, agents: Agents) -> None:
        user, other = await users.login(), await users.login()
        existing = await agents.register(other)
        base = {"name": "", "description": "", "input_parameters": {}}
        cases = [
            ({"id": "xyz"}, "Parameter 'id' must be a valid uuid"),
            ({"id": None}, "Parameter 'id' must not be a null"),
            ({"id": existing["id"]}, f"Agent with {existing['id']} already exists"),
        ]
        for extra, detail in cases:
            response = await client.post(
                "/api/agents/register", json={**base, **extra}, headers=user.headers
            )
            assert response.status_code == 400
            assert await response.get_json() == {"detail": detail}

    async def test_name_too_long(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        response = await client.post(
            "/api/agents/register",
            json={"name": "a" * 56, "description": "", "input_parameters": {}},
            headers=user.headers,
        )
        assert response.status_code == 422
        [error] = (await response.get_json())["detail"]
        assert error["msg"] == "Value error, Agent name must be less than 55 characters"
        assert error["loc"] == ["body", "name"]

    async def test_input_parameters_union(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        response = await client.post(
            "/api/agents/register",
            json={"name": "", "description": "", "input_parameters": None},
            headers=user.headers,
        )
        locs = [e["loc"] for e in (await response.get_json())["detail"]]
        assert locs == [
            ["body", "input_parameters", "dict[any,any]"],
            ["body", "input_parameters", "str"],
        ]

    async def test_string_schema_must_be_an_object(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        ok = await client.post(
            "/api/agents/register",
            json={"name": "", "description": "", "input_parameters": '{"a": 1}'},
            headers=user.headers,
        )
        assert (await ok.get_json())["input_parameters"] == {"a": 1}
        bad = await client.post(
            "/api/agents/register",
            json={"name": "", "description": "", "input_parameters": "[1]"},
            headers=user.headers,
        )
        assert bad.status_code == 422

    async def test_agent_token_cannot_register(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        agent = await agents.register(user)
        response = await client.post(
            "/api/agents/register",
            json={"name": "", "description": "", "input_parameters": {}},
            headers={"Authorization": f"Bearer {agent['jwt']}"},
        )
        assert response.status_code == 401


class TestReadAgents:
    async def test_list_filters_and_dto(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        first = await agents.register(user, name="Alpha", description="first one")
        await agents.register(user, name="", description="")
        second = await agents.register(user, name="beta", description="Finds THINGS")
        for path in ("/api/agents/", "/api/agents"):
            response = await client.get(path, headers=user.headers)
            listed = await response.get_json()
            assert [a["agent_id"] for a in listed] == [first["id"], second["id"]]
        dto = listed[0]
        assert set(dto) == {
            "agent_id",
            "agent_name",
            "agent_alias",
            "agent_description",
            "agent_schema",
            "is_active",
            "agent_jwt",
            "created_at",
            "updated_at",
        }
        assert dto["agent_name"] == "alpha"
        assert dto["agent_schema"]["function"]["name"] == "alpha"
        assert dto["is_active"] is False
        by_desc = await client.get("/api/agents/?description=things", headers=user.headers)
        assert [a["agent_id"] for a in await by_desc.get_json()] == [second["id"]]
        by_name = await client.get("/api/agents/?name=alpha", headers=user.headers)
        assert [a["agent_id"] for a in await by_name.get_json()] == [first["id"]]

    async def test_agent_token_acts_as_creator(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        agent = await agents.register(user)
        headers = {"Authorization": f"Bearer {agent['jwt']}"}
        response = await client.get(f"/api/agents/{agent['id']}", headers=headers)
        assert response.status_code == 200
        await client.delete(f"/api/agents/{agent['id']}", headers=user.headers)
        response = await client.get("/api/agents/", headers=headers)
        assert response.status_code == 401

    async def test_isolation(self, client: QuartClient, users: Users, agents: Agents) -> None:
        a, b = await users.login(), await users.login()
        agent = await agents.register(a)
        assert await (await client.get("/api/agents/", headers=b.headers)).get_json() == []
        agent_id = agent["id"]
        response = await client.get(f"/api/agents/{agent_id}", headers=b.headers)
        assert await response.get_json() == {"detail": f"Agent '{agent_id}' does not exist"}
        response = await client.patch(
            f"/api/agents/{agent_id}",
            json={"name": "n", "description": "d", "input_parameters": {}},
            headers=b.headers,
        )
        assert await response.get_json() == {"detail": f"Agent '{agent_id}' does not exist"}
        response = await client.delete(f"/api/agents/{agent_id}", headers=b.headers)
        assert response.status_code == 400
        assert await response.get_json() == {"detail": f"Agent {agent_id} was not found"}
        still = await client.get(f"/api/agents/{agent_id}", headers=a.headers)
        assert still.status_code == 200


class TestPatchDeleteAgent:
    async def test_patch_keeps_alias(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        agent = await agents.register(user, name="old")
        response = await client.patch(
            f"/api/agents/{agent['id']}",
            json={
                "name": "New Name",
                "description": "d2",
                "input_parameters": {"function": {"name": "f"}},
            },
            headers=user.headers,
        )
        body = await response.get_json()
        assert body["agent_name"] == "new_name"
        assert body["agent_alias"] == agent["alias"]
        assert body["agent_schema"] == {"function": {"name": "f"}}

    async def test_delete(self, client: QuartClient, users: Users, agents: Agents) -> None:
        user = await users.login()
        agent = await agents.register(user)
        response = await client.delete(f"/api/agents/{agent['id']}", headers=user.headers)
        assert response.status_code == 204
        assert await response.get_data() == b""
        bad = await client.delete("/api/agents/xyz", headers=user.headers)
        assert bad.status_code == 422


class TestActive:
    async def test_service_mode_table(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        uid = str(user.id)
        cases = [
            ({}, "", 400, "You must provide either 'user_id' or your jwt token to continue."),
            (
                {**user.headers, **MASTER},
                f"&user_id={uid}",
                400,
                "You must provide either 'user_id' or your jwt token, "
                "but not both at the same time.",
            ),
            (
                user.headers,
                f"&user_id={uid}",
                400,
                "Lookup by user_id is not allowed for plain authenticated users.",
            ),
            ({"Authorization": "Bearer bad"}, "", 400, "JWT token is invalid or expired"),
            (
                {},
                f"&user_id={uid}",
                401,
                "You must provide x-api-key header if user_id query parameter is provided.",
            ),
            ({"X-API-KEY": "wrong"}, f"&user_id={uid}", 401, "Invalid x-api-key header"),
        ]
        for headers, query, status, detail in cases:
            response = await client.get(
                f"/api/agents/active?agent_type=all{query}", headers=headers
            )
            assert response.status_code == status, detail
            assert await response.get_json() == {"detail": detail}

    async def test_items(self, client: QuartClient, users: Users, agents: Agents) -> None:
        user, other = await users.login(), await users.login()
        one = await agents.register(user, active=True)
        two = await agents.register(user, active=True)
        await agents.register(user)
        await agents.register(other, active=True)
        flow = await client.post(
            "/api/agentflows/register",
            json={
                "name": "Flow",
                "description": "fd",
                "flow": [{"id": one["id"], "type": "genai"}, {"id": two["id"], "type": "genai"}],
            },
            headers=user.headers,
        )
        flow_body = await flow.get_json()
        for headers, query in ((user.headers, ""), (MASTER, f"&user_id={user.id}")):
            response = await client.get(
                f"/api/agents/active?agent_type=all{query}", headers=headers
            )
            body = await response.get_json()
            assert body["count_active_connections"] == 3
            items = body["active_connections"]
            assert [i["id"] for i in items] == [flow_body["id"], two["id"], one["id"]]
            assert items[0]["type"] == "flow" and items[0]["name"] == flow_body["alias"]
            assert items[0]["flow"] == [one["id"], two["id"]]
            assert items[0]["agent_schema"]["function"] == {
                "name": flow_body["alias"],
                "description": "fd",
            }
            assert items[1] == {
                "id": two["id"],
                "name": two["alias"],
                "type": "genai",
                "agent_schema": {
                    "type": "function",
                    "function": {"name": two["alias"], "description": "d"},
                },
                "created_at": items[1]["created_at"],
                "updated_at": items[1]["updated_at"],
                "is_active": True,
            }
        for kind in ("mcp", "a2a"):
            response = await client.get(
                f"/api/agents/active?agent_type={kind}", headers=user.headers
            )
            assert await response.get_json() == {
                "count_active_connections": 0,
                "active_connections": [],
            }
        bad = await client.get("/api/agents/active?agent_type=x", headers=user.headers)
        assert bad.status_code == 422


class TestFlows:
    async def test_lifecycle(self, client: QuartClient, users: Users, agents: Agents) -> None:
        user, other = await users.login(), await users.login()
        one = await agents.register(user, active=True)
        two = await agents.register(user, active=True)
        body = {
            "name": "My Flow",
            "description": "d",
            "flow": [{"id": one["id"], "type": "genai"}, {"agent_id": two["id"]}],
        }
        response = await client.post("/api/agentflows/register", json=body, headers=user.headers)
        assert response.status_code == 200
        row = await response.get_json()
        assert set(row) == {
            "id",
            "name",
            "alias",
            "description",
            "flow",
            "is_active",
            "creator_id",
            "created_at",
            "updated_at",
        }
        assert row["name"] == "my_flow" and row["is_active"] is True
        assert row["flow"] == [
            {"id": one["id"], "type": "genai"},
            {"id": two["id"], "type": "genai"},
        ]
        listed = await (await client.get("/api/agentflows", headers=user.headers)).get_json()
        assert [f["id"] for f in listed] == [row["id"]] and listed[0]["is_active"] is True
        assert await (await client.get("/api/agentflows/", headers=other.headers)).get_json() == []
        flow_id = row["id"]
        foreign = await client.get(f"/api/agentflows/{flow_id}", headers=other.headers)
        assert await foreign.get_json() == {"detail": f"Flow with id '{flow_id}' does not exist"}
        await agents.set_active(UUID(two["id"]), False)
        got = await (
            await client.get(f"/api/agentflows/{flow_id}", headers=user.headers)
        ).get_json()
        assert got["is_active"] is False
        await agents.set_active(UUID(two["id"]))
        patched = await client.patch(f"/api/agentflows/{flow_id}", json=body, headers=user.headers)
        assert (await patched.get_json())["alias"] != row["alias"]
        foreign = await client.patch(f"/api/agentflows/{flow_id}", json=body, headers=other.headers)
        assert foreign.status_code == 400
        gone = await client.delete(f"/api/agentflows/{flow_id}", headers=other.headers)
        assert await gone.get_json() == {"detail": f"agentflow {flow_id} was not found"}
        deleted = await client.delete(f"/api/agentflows/{flow_id}", headers=user.headers)
        assert deleted.status_code == 204

    async def test_checks(self, client: QuartClient, users: Users, agents: Agents) -> None:
        user = await users.login()
        one = await agents.register(user, active=True)
        idle = await agents.register(user)
        good = [{"id": one["id"], "type": "genai"}, {"id": one["id"], "type": "genai"}]
        cases = [
            (
                {"name": "", "description": "d", "flow": good},
                "'name' parameter must not be empty string",
            ),
            (
                {"name": "n", "description": "", "flow": good},
                "'description' parameter must not be empty string",
            ),
            (
                {"name": "n", "description": "d", "flow": [{"id": "x", "type": "genai"}, {}]},
                "Agent ID is not a valid UUID",
            ),
            (
                {"name": "n", "description": "d", "flow": [{"id": one["id"], "type": "x"}, {}]},
                "Agent type must be one of 'genai', 'mcp', or 'a2a'",
            ),
            (
                {
                    "name": "n",
                    "description": "d",
                    "flow": [
                        {"id": one["id"], "type": "genai"},
                        {"id": idle["id"], "type": "genai"},
                    ],
                },
                f"One or more agents were not registered previously or are not active: "
                f"['{idle['id']}']. Make sure agent was registered by you and is active before "
                "including it into the agent flow",
            ),
        ]
        for body, detail in cases:
            response = await client.post(
                "/api/agentflows/register", json=body, headers=user.headers
            )
            assert response.status_code == 400, detail
            assert await response.get_json() == {"detail": detail}
        short = await client.post(
            "/api/agentflows/register-flow",
            json={"name": "n", "description": "d", "flow": good[:1]},
            headers=user.headers,
        )
        [error] = (await short.get_json())["detail"]
        assert error["msg"] == "Value error, Agentflow must contain more than 1 agent"
        assert error["loc"] == ["body", "flow"] and error["ctx"] == {"error": {}}

    async def test_deleting_an_agent_deactivates_flows(
        self, client: QuartClient, users: Users, agents: Agents
    ) -> None:
        user = await users.login()
        one = await agents.register(user, active=True)
        two = await agents.register(user, active=True)
        body = {
            "name": "f",
            "description": "d",
            "flow": [{"id": one["id"], "type": "genai"}, {"id": two["id"], "type": "genai"}],
        }
        await client.post("/api/agentflows/register", json=body, headers=user.headers)
        await client.delete(f"/api/agents/{one['id']}", headers=user.headers)
        [flow] = await (await client.get("/api/agentflows/", headers=user.headers)).get_json()
        assert flow["is_active"] is False


class TestToolSources:
    async def test_none_yet(self, client: QuartClient, users: Users) -> None:
        user = await users.login()
        for path in ("/api/mcp/servers", "/api/a2a/agents"):
            assert await (await client.get(path, headers=user.headers)).get_json() == []


class TestOpenAPI:
    async def test_lists_every_route(self, client: QuartClient) -> None:
        document = await (await client.get("/openapi.json")).get_json()
        paths = document["paths"]
        for path in (
            "/api/register",
            "/api/login/access-token",
            "/api/validate-token",
            "/api/profiles/{user_id}",
            "/api/agents/",
            "/api/agents/active",
            "/api/agents/{agent_id}",
            "/api/agents/register",
            "/api/agentflows/",
            "/api/agentflows/{agentflow_id}",
            "/api/agentflows/register",
            "/api/mcp/servers",
            "/api/a2a/agents",
        ):
            assert path in paths, path
        assert paths["/api/agents/"]["get"]["security"] == [{"OAuth2PasswordBearer": []}]
        login = paths["/api/login/access-token"]["post"]["requestBody"]["content"]
        assert "application/x-www-form-urlencoded" in login
