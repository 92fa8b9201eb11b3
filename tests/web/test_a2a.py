"""A2A agents over the API, against a real A2A agent (a2a-sdk) serving its card on loopback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from quart.testing import QuartClient

from tests.actors.tools.servers import (
    ThreadServer,
    a2a_app,
    free_port,
    json_answer,
    plain_app,
    redirect_to,
)
from web import Settings

from .conftest import Agents, LoggedIn, Users

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")
ALIAS = re.compile(r"^Travel_Agent_[a-z]{6}$")
A2A_PROPERTIES = {
    "task": {"type": "string", "description": "A meaningful, well-formulated task for the agent"},
    "text": {"type": "string"},
}


@pytest.fixture(name="settings")
def _settings(tmp_path: Any) -> Settings:
    return Settings(BCRYPT_ROUNDS=4, FILES_DIR=tmp_path / "files", OUTBOUND_DEADLINE=3.0)


@pytest.fixture(name="agent_server")
def _agent_server() -> Iterator[ThreadServer]:
    port = free_port()
    server = ThreadServer(lambda: a2a_app(f"http://127.0.0.1:{port}/"), port=port).start()
    yield server
    server.stop()


async def _add(client: QuartClient, user: LoggedIn, url: str) -> Any:
    return await client.post("/api/a2a/agents", json={"server_url": url}, headers=user.headers)


class TestAdd:
    async def test_fetches_validates_and_stores_the_card(
        self, client: QuartClient, users: Users, agent_server: ThreadServer
    ) -> None:
        user = await users.login()
        # Path, query and fragment are dropped: the card is at the well-known path.
        response = await _add(client, user, f"{agent_server.url}/some/path?q=1#f")
        assert response.status_code == 200, await response.get_data()
        body = await response.get_json()
        assert set(body) == {
            "id",
            "name",
            "alias",
            "description",
            "server_url",
            "card_content",
            "created_at",
            "updated_at",
        }
        assert body["name"] == "Travel_Agent" and ALIAS.match(body["alias"])
        assert body["description"] == "Plans trips"
        assert body["server_url"] == agent_server.url
        assert STAMP.match(body["created_at"]) and body["created_at"] == body["updated_at"]
        content = body["card_content"]
        assert "name" not in content and "description" not in content
        assert content["version"] == "1.0.0"
        assert content["skills"] == [
            {
                "id": "plan",
                "name": "Plan_trip",
                "description": "Plans a trip to a city",
                "tags": ["travel"],
            }
        ]

        [listed] = await (await client.get("/api/a2a/agents", headers=user.headers)).get_json()
        assert listed == {**body, "is_active": True, "creator_id": str(user.id)}
        one = await client.get(f"/api/a2a/agents/{body['id']}", headers=user.headers)
        assert await one.get_json() == listed

        again = await _add(client, user, agent_server.url)
        assert await again.get_json() == body
        assert (
            len(await (await client.get("/api/a2a/agents", headers=user.headers)).get_json()) == 1
        )

    async def test_the_older_card_path(self, client: QuartClient, users: Users) -> None:
        card = {
            "name": "Old Agent",
            "description": "from before",
            "url": "http://elsewhere/",
            "version": "0.1",
            "capabilities": {},
            "defaultInputModes": ["text"],
            "defaultOutputModes": ["text"],
            "skills": [{"id": "s", "name": "S", "description": "does s", "tags": []}],
        }
        server = ThreadServer(
            lambda: plain_app({"/.well-known/agent.json": json_answer(card)})
        ).start()
        try:
            response = await _add(client, await users.login(), server.url)
            assert response.status_code == 200, await response.get_data()
            body = await response.get_json()
            assert body["name"] == "Old_Agent" and "url" not in body["card_content"]
        finally:
            server.stop()


class TestRefused:
    async def _refused(
        self, client: QuartClient, user: LoggedIn, url: str, detail: str | None = None
    ) -> None:
        response = await _add(client, user, url)
        assert response.status_code == 400, await response.get_data()
        expected = detail or f"Cannot retrieve data about a2a card on url: {url}"
        assert await response.get_json() == {"detail": expected}
        assert await (await client.get("/api/a2a/agents", headers=user.headers)).get_json() == []

    async def test_unreachable(self, client: QuartClient, users: Users) -> None:
        await self._refused(client, await users.login(), f"http://127.0.0.1:{free_port()}/")

    async def test_no_card(self, client: QuartClient, users: Users) -> None:
        server = ThreadServer(lambda: plain_app({"/x": json_answer({})})).start()
        try:
            await self._refused(client, await users.login(), f"{server.url}/")
        finally:
            server.stop()

    async def test_a_card_that_does_not_validate(self, client: QuartClient, users: Users) -> None:
        bad = {"name": "No skills", "description": 12}
        server = ThreadServer(
            lambda: plain_app({"/.well-known/agent-card.json": json_answer(bad)})
        ).start()
        try:
            user = await users.login()
            response = await _add(client, user, f"{server.url}/")
            assert response.status_code == 400
            detail = (await response.get_json())["detail"]
            assert detail.startswith(f"Invalid a2a card on url: {server.url}: ")
            assert (
                await (await client.get("/api/a2a/agents", headers=user.headers)).get_json() == []
            )
        finally:
            server.stop()

    async def test_redirect_to_another_host(
        self, client: QuartClient, users: Users, agent_server: ThreadServer
    ) -> None:
        target = f"http://localhost:{agent_server.port}/.well-known/agent-card.json"
        server = ThreadServer(
            lambda: plain_app({"/.well-known/agent-card.json": redirect_to(target)})
        ).start()
        try:
            await self._refused(client, await users.login(), f"{server.url}/")
        finally:
            server.stop()


class TestDelete:
    async def test_delete(
        self, client: QuartClient, users: Users, agent_server: ThreadServer
    ) -> None:
        user = await users.login()
        card = await (await _add(client, user, agent_server.url)).get_json()
        gone = await client.delete(f"/api/a2a/agents/{card['id']}", headers=user.headers)
        assert gone.status_code == 204 and await gone.get_data() == b""
        assert await (await client.get("/api/a2a/agents", headers=user.headers)).get_json() == []
        again = await client.delete(f"/api/a2a/agents/{card['id']}", headers=user.headers)
        assert await again.get_json() == {
            "detail": f"MCP server with ID {card['id']} was not found"
        }
        missing = await client.get(f"/api/a2a/agents/{card['id']}", headers=user.headers)
        assert await missing.get_json() == {
            "detail": f"A2A agent with id: '{card['id']}' does not exist "
        }


class TestOwnershipAndActiveList:
    async def test_another_user_never_sees_it(
        self, client: QuartClient, users: Users, agent_server: ThreadServer
    ) -> None:
        alice, bob = await users.login(), await users.login()
        card = await (await _add(client, alice, agent_server.url)).get_json()
        assert await (await client.get("/api/a2a/agents", headers=bob.headers)).get_json() == []
        assert (
            await client.get(f"/api/a2a/agents/{card['id']}", headers=bob.headers)
        ).status_code == 400
        assert (
            await client.delete(f"/api/a2a/agents/{card['id']}", headers=bob.headers)
        ).status_code == 400
        active = await client.get("/api/agents/active?agent_type=a2a", headers=bob.headers)
        assert (await active.get_json())["active_connections"] == []

    async def test_the_card_as_a_tool(
        self, client: QuartClient, users: Users, agents: Agents, agent_server: ThreadServer
    ) -> None:
        user = await users.login()
        card = await (await _add(client, user, agent_server.url)).get_json()
        response = await client.get("/api/agents/active?agent_type=a2a", headers=user.headers)
        [item] = (await response.get_json())["active_connections"]
        schema = {
            "title": "Travel_Agent",
            "description": "Plans trips\nSKILLS:\nPlans a trip to a city",
            "properties": A2A_PROPERTIES,
            "required": ["task", "text"],
            "type": "object",
        }
        assert item == {
            "id": card["id"],
            "name": "Travel_Agent",
            "type": "a2a",
            "url": f"{agent_server.url}/",
            "agent_schema": schema,
            "created_at": card["created_at"],
            "updated_at": card["updated_at"],
            "is_active": True,
        }
        response = await client.get("/api/agents/active?agent_type=all", headers=user.headers)
        [by_alias] = (await response.get_json())["active_connections"]
        assert by_alias == {
            **item,
            "name": card["alias"],
            "agent_schema": {**schema, "title": card["alias"]},
        }

        agent = await agents.register(user, active=True)
        body = {
            "name": "Plan then book",
            "description": "plans, then books",
            "flow": [{"id": card["id"], "type": "a2a"}, {"id": agent["id"], "type": "genai"}],
        }
        created = await client.post("/api/agentflows/register", json=body, headers=user.headers)
        assert created.status_code == 200, await created.get_data()
        flow = await created.get_json()
        response = await client.get("/api/agents/active?agent_type=genai", headers=user.headers)
        [flow_item, _agent] = (await response.get_json())["active_connections"]
        assert flow_item["agent_schema"] == {
            "name": flow["alias"],
            "description": "plans, then books",
            "properties": A2A_PROPERTIES,
            "required": ["task", "text"],
            "type": "object",
        }
        [listed] = await (await client.get("/api/agentflows/", headers=user.headers)).get_json()
        assert listed["is_active"] is True
