"""``created_at`` and ``updated_at``: one instant per statement, moved only by a change.

Clients check that a fresh row was never updated (``created_at == updated_at``) and that
a refused or no-op change left ``updated_at`` alone.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from quart.testing import QuartClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import Agent, AgentFlow, ChatConversation, ModelConfig, ModelProvider, User

from .conftest import Agents, LoggedIn, Users
from .test_llm import add_config, add_provider


def unchanged(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return (
        after["created_at"] == before["created_at"] and after["updated_at"] == before["updated_at"]
    )


async def stamps(
    sessionmaker: async_sessionmaker[AsyncSession], model: Any, key: Any
) -> tuple[Any, Any]:
    async with sessionmaker() as session:
        row = (await session.execute(select(model.created_at, model.updated_at).where(key))).one()
        return row.created_at, row.updated_at


async def flow_of(client: QuartClient, user: LoggedIn, agents: Agents) -> dict[str, Any]:
    one = await agents.register(user, active=True)
    two = await agents.register(user, active=True)
    body = {
        "name": "f",
        "description": "d",
        "flow": [{"id": one["id"], "type": "genai"}, {"id": two["id"], "type": "genai"}],
    }
    response = await client.post("/api/agentflows/register", json=body, headers=user.headers)
    assert response.status_code == 200, await response.get_data()
    return {"body": body, "row": await response.get_json()}


class TestFreshRows:
    async def test_every_created_row_has_one_instant(
        self,
        client: QuartClient,
        users: Users,
        agents: Agents,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        registered = await users.register()
        assert registered["created_at"] == registered["updated_at"]
        created, updated = await stamps(sessionmaker, User, User.id == user.id)
        assert created == updated

        agent = await agents.register(user)
        assert agent["created_at"] == agent["updated_at"]
        async with sessionmaker() as session:
            row = await session.get_one(Agent, UUID(agent["id"]))
            assert row.created_at == row.updated_at == row.last_invoked_at

        flow = (await flow_of(client, user, agents))["row"]
        assert flow["created_at"] == flow["updated_at"]
        created, updated = await stamps(sessionmaker, AgentFlow, AgentFlow.id == UUID(flow["id"]))
        assert created == updated
        listed = await (await client.get("/api/agentflows/", headers=user.headers)).get_json()
        assert listed[0]["created_at"] == listed[0]["updated_at"]

        provider = await add_provider(client, user)
        assert provider["created_at"] == provider["updated_at"]
        config = await add_config(client, user)
        created, updated = await stamps(
            sessionmaker, ModelConfig, ModelConfig.id == UUID(config["id"])
        )
        assert created == updated

        chat = await client.post(
            "/api/chats", json={"session_id": str(uuid4()), "title": "t"}, headers=user.headers
        )
        body = await chat.get_json()
        assert body["created_at"] == body["updated_at"]

    async def test_a_router_registration_stamps_the_agent_once(
        self, users: Users, agents: Agents, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        user = await users.login()
        agent = await agents.register(user)
        await agents.set_active(UUID(agent["id"]))
        async with sessionmaker() as session:
            row = await session.get_one(Agent, UUID(agent["id"]))
            assert row.updated_at == row.last_invoked_at > row.created_at


class TestChanges:
    async def test_agent_patch(self, client: QuartClient, users: Users, agents: Agents) -> None:
        user = await users.login()
        agent = await agents.register(user, name="a", description="d", input_parameters={"x": 1})
        path = f"/api/agents/{agent['id']}"
        same = {"name": "a", "description": "d", "input_parameters": {"x": 1}}
        refused = {"name": "a" * 60, "description": "d", "input_parameters": {"x": 1}}
        assert (await client.patch(path, json=refused, headers=user.headers)).status_code == 422
        noop = await client.patch(path, json=same, headers=user.headers)
        assert noop.status_code == 200
        got = await (await client.get(path, headers=user.headers)).get_json()
        assert unchanged(agent, got)
        changed = await client.patch(path, json={**same, "description": "e"}, headers=user.headers)
        after = await changed.get_json()
        assert after["created_at"] == agent["created_at"]
        assert after["updated_at"] > agent["updated_at"]

    async def test_flow_patch(self, client: QuartClient, users: Users, agents: Agents) -> None:
        user = await users.login()
        made = await flow_of(client, user, agents)
        row, body = made["row"], made["body"]
        path = f"/api/agentflows/{row['id']}"
        for refused in (
            {**body, "name": ""},
            {**body, "flow": body["flow"][:1]},
            {**body, "flow": [{"id": str(uuid4()), "type": "genai"}] * 2},
        ):
            response = await client.patch(path, json=refused, headers=user.headers)
            assert response.status_code in (400, 422)
        got = await (await client.get(path, headers=user.headers)).get_json()
        assert unchanged(row, got)
        # A flow PATCH regenerates the alias (the contract), so it always changes the row.
        patched = await (await client.patch(path, json=body, headers=user.headers)).get_json()
        assert patched["created_at"] == row["created_at"]
        assert patched["updated_at"] > row["updated_at"]
        # Deleting one of its agents deactivates it: a change.
        agent_id = body["flow"][0]["id"]
        deleted = await client.delete(f"/api/agents/{agent_id}", headers=user.headers)
        assert deleted.status_code == 204
        got = await (await client.get(path, headers=user.headers)).get_json()
        assert got["is_active"] is False
        assert got["updated_at"] > patched["updated_at"]

    async def test_provider_and_config_patch(
        self,
        client: QuartClient,
        users: Users,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        user = await users.login()
        provider = await add_provider(client, user, api_key="sk-1")
        path = "/api/llm/model/providers/openai"
        metadata = {"base_url": "http://x"}
        for noop in ({"api_key": "sk-1", "metadata": metadata}, {"metadata": metadata}):
            response = await client.patch(path, json=noop, headers=user.headers)
            assert unchanged(provider, await response.get_json())
        refused = await client.patch(path, json={"metadata": []}, headers=user.headers)
        assert refused.status_code == 422
        changed = await client.patch(
            path, json={"api_key": "sk-2", "metadata": metadata}, headers=user.headers
        )
        after = await changed.get_json()
        assert after["created_at"] == provider["created_at"]
        assert after["updated_at"] > provider["updated_at"]

        config = await add_config(client, user, temperature=0.5)
        key = ModelConfig.id == UUID(config["id"])
        before = await stamps(sessionmaker, ModelConfig, key)
        config_path = f"/api/llm/model/config/{config['id']}"
        refused = await client.patch(
            config_path, json={"max_last_messages": 21}, headers=user.headers
        )
        assert refused.status_code == 422
        noop = await client.patch(
            config_path, json={"temperature": 0.5, "name": "gpt"}, headers=user.headers
        )
        assert noop.status_code == 200
        assert await stamps(sessionmaker, ModelConfig, key) == before
        await client.patch(config_path, json={"temperature": 0.6}, headers=user.headers)
        created, updated = await stamps(sessionmaker, ModelConfig, key)
        assert created == before[0] and updated > before[1]
        created, updated = await stamps(
            sessionmaker, ModelProvider, ModelProvider.id == UUID(provider["id"])
        )
        assert updated > created

    async def test_chat_rename(
        self, client: QuartClient, users: Users, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        user = await users.login()
        session_id = str(uuid4())
        made = await client.post(
            "/api/chats", json={"session_id": session_id, "title": "t"}, headers=user.headers
        )
        chat = await made.get_json()
        path = f"/api/chat?session_id={session_id}"
        refused = await client.patch(path, json={"title": ""}, headers=user.headers)
        assert refused.status_code == 422
        noop = await client.patch(path, json={"title": "t"}, headers=user.headers)
        assert unchanged(chat, await noop.get_json())
        renamed = await client.patch(path, json={"title": "u"}, headers=user.headers)
        after = await renamed.get_json()
        assert after["created_at"] == chat["created_at"]
        assert after["updated_at"] > chat["updated_at"]
        key = ChatConversation.session_id == UUID(session_id)
        created, updated = await stamps(sessionmaker, ChatConversation, key)
        assert updated > created
