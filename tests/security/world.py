"""Two users, each owning one of every kind of object, and a dump of the database.

Every object is created through the API where one exists; chat messages and logs,
which only the WebSocket and the router write, go through their repositories.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from quart.datastructures import FileStorage
from quart.testing import QuartClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import (
    A2ARepository,
    Base,
    ChatRepository,
    LogRepository,
    MCPRepository,
    NewLog,
    NewTool,
    SenderType,
)

from ..web.conftest import Agents, LoggedIn, Users


@dataclass(frozen=True)
class Owned:
    """One user and everything they own."""

    user: LoggedIn
    agents: list[dict[str, Any]]
    flow: dict[str, Any]
    provider_name: str
    api_key: str
    config_id: str
    config_name: str
    file_id: str
    file_name: str
    file_bytes: bytes
    session_id: str
    request_id: str
    chat_title: str
    message: str
    log_message: str
    first_name: str
    strings: list[str] = field(default_factory=list)
    mcp_server_id: str = ""
    mcp_server_url: str = ""
    mcp_tool_id: str = ""
    a2a_card_id: str = ""
    a2a_card_name: str = ""

    @property
    def agent_token(self) -> str:
        token: str = self.agents[0]["jwt"]
        return token

    @property
    def agent_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.agent_token}"}

    def marks(self) -> set[str]:
        """Every string that would show this user's data in someone else's response."""
        found = {
            str(self.user.id),
            self.user.username,
            self.user.token,
            str(self.flow["id"]),
            self.flow["name"],
            self.flow["alias"],
            self.flow["description"],
            self.provider_name,
            self.api_key,
            self.config_id,
            self.config_name,
            self.file_id,
            self.file_name,
            self.file_bytes.decode(),
            self.session_id,
            self.request_id,
            self.chat_title,
            self.message,
            self.log_message,
            self.first_name,
            self.mcp_server_id,
            self.mcp_server_url,
            self.mcp_tool_id,
            self.a2a_card_id,
            self.a2a_card_name,
        }
        for agent in self.agents:
            found |= {agent["id"], agent["name"], agent["alias"], agent["jwt"]}
            found.add(agent["description"])
        return found


@dataclass(frozen=True)
class World:
    """Alice and Bob, each with one of everything."""

    alice: Owned
    bob: Owned


def _tag() -> str:
    return f"zq{uuid.uuid4().hex[:8]}"


async def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, await response.get_data()
    return await response.get_json()


async def build_owned(
    client: QuartClient,
    users: Users,
    agents: Agents,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Owned:
    """Register a user and create one object of every kind they can own."""
    tag = _tag()
    user = await users.login(f"user_{tag}")
    headers = user.headers
    made = [
        await agents.register(
            user, name=f"{tag}_agent_{i}", description=f"{tag} agent {i} does", active=True
        )
        for i in range(2)
    ]
    flow = await _ok(
        await client.post(
            "/api/agentflows/register",
            json={
                "name": f"{tag}_flow",
                "description": f"{tag} flow description",
                "flow": [{"id": agent["id"], "type": "genai"} for agent in made],
            },
            headers=headers,
        )
    )
    provider_name, api_key = f"{tag}-provider", f"sk-{tag}-secret-api-key"
    await _ok(
        await client.post(
            "/api/llm/model/provider",
            json={"name": provider_name, "api_key": api_key, "metadata": {}},
            headers=headers,
        )
    )
    config_name = f"{tag}-config"
    providers = await _ok(
        await client.post(
            "/api/llm/model/config",
            json={"name": config_name, "model": f"{tag}-model", "provider": provider_name},
            headers=headers,
        )
    )
    config_id = providers[0]["configs"][0]["id"]
    session_id, request_id = str(uuid.uuid4()), str(uuid.uuid4())
    chat_title = f"{tag} chat"
    await _ok(
        await client.post(
            "/api/chats", json={"session_id": session_id, "title": chat_title}, headers=headers
        )
    )
    file_name, file_bytes = f"{tag}-notes.txt", f"{tag} file content".encode()
    created = await _ok(
        await client.post(
            "/files",
            files={
                "file": FileStorage(
                    BytesIO(file_bytes), filename=file_name, content_type="text/plain"
                )
            },
            form={"session_id": session_id, "request_id": request_id},
            headers=headers,
        ),
        201,
    )
    first_name = f"{tag}first"
    await _ok(
        await client.patch(
            f"/api/profiles/{user.id}", json={"first_name": first_name}, headers=headers
        )
    )
    message, log_message = f"{tag} says hello", f"{tag} log line"
    # Tool sources written directly: adding them over the API would probe real servers.
    mcp_server_url, a2a_card_name = f"http://{tag}.invalid/mcp", f"{tag}_card"
    async with sessionmaker.begin() as session:
        server = await MCPRepository(session).add(
            mcp_server_url,
            [NewTool(f"{tag}_tool", f"{tag}_tool_abcdef", f"{tag} tool", {}, None)],
            owner_id=user.id,
        )
        [tool] = (await MCPRepository(session).tools([server.id]))[server.id]
        card = await A2ARepository(session).add(
            url=f"http://{tag}-card.invalid",
            name=a2a_card_name,
            alias=f"{a2a_card_name}_abcdef",
            description=f"{tag} card description",
            card_content={"skills": []},
            owner_id=user.id,
        )
        mcp_server_id, mcp_tool_id, a2a_card_id = str(server.id), str(tool.id), str(card.id)
    async with sessionmaker.begin() as session:
        await ChatRepository(session).add_message(
            uuid.UUID(session_id),
            sender_type=SenderType.USER,
            content=message,
            request_id=uuid.UUID(request_id),
        )
        await LogRepository(session).add_many(
            [
                NewLog(
                    session_id=uuid.UUID(session_id),
                    request_id=uuid.UUID(request_id),
                    agent_id=made[0]["id"],
                    message=log_message,
                    log_level="info",
                    creator_id=user.id,
                )
            ]
        )
    return Owned(
        user=user,
        agents=made,
        flow=flow,
        provider_name=provider_name,
        api_key=api_key,
        config_id=config_id,
        config_name=config_name,
        file_id=created["id"],
        file_name=file_name,
        file_bytes=file_bytes,
        session_id=session_id,
        request_id=request_id,
        chat_title=chat_title,
        message=message,
        log_message=log_message,
        first_name=first_name,
        mcp_server_id=mcp_server_id,
        mcp_server_url=mcp_server_url,
        mcp_tool_id=mcp_tool_id,
        a2a_card_id=a2a_card_id,
        a2a_card_name=a2a_card_name,
    )


async def build_world(
    client: QuartClient,
    users: Users,
    agents: Agents,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> World:
    alice = await build_owned(client, users, agents, sessionmaker)
    bob = await build_owned(client, users, agents, sessionmaker)
    return World(alice, bob)


Dump = dict[str, dict[str, str]]


async def dump(sessionmaker: async_sessionmaker[AsyncSession]) -> Dump:
    """Return every row of every table, keyed by table and primary key, as JSON text."""
    out: Dump = {}
    async with sessionmaker() as session:
        for table in Base.metadata.sorted_tables:
            rows = (await session.execute(select(table))).mappings().all()
            keys = [column.name for column in table.primary_key.columns]
            out[table.name] = {
                json.dumps([str(row[key]) for key in keys]): json.dumps(
                    dict(row), default=str, sort_keys=True
                )
                for row in rows
            }
    return out


def rows_of(snapshot: Dump, owner: Owned) -> dict[tuple[str, str], str]:
    """Pick the rows that mention ``owner`` (their user id or one of their object ids)."""
    ids = {
        str(owner.user.id),
        owner.session_id,
        owner.config_id,
        owner.file_id,
        str(owner.flow["id"]),
        *(agent["id"] for agent in owner.agents),
        owner.mcp_server_id,
        owner.a2a_card_id,
    }
    picked: dict[tuple[str, str], str] = {}
    for table, rows in snapshot.items():
        for key, text in rows.items():
            if any(value in text for value in ids):
                picked[(table, key)] = text
    return picked
