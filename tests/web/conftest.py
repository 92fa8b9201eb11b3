"""Web tests run on asyncio only, against the real app and a real PostgreSQL.

Fixtures for every web test module:
    settings: development ``Settings`` with cheap bcrypt.
    app: ``create_app(settings, sessionmaker)``.
    client: ``app.test_client()``.
    users: a :class:`Users` helper; ``await users.login()`` registers a fresh user and
        returns a :class:`LoggedIn` (``.id``, ``.token``, ``.headers``).
    agents: an :class:`Agents` helper; ``await agents.register(user, active=True)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest
from quart import Quart
from quart.testing import QuartClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from persistence import Agent
from web import Settings, create_app

PASSWORD = "Secret#123"
_counter = itertools.count()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="settings")
def _settings(tmp_path: Any) -> Settings:
    return Settings(BCRYPT_ROUNDS=4, FILES_DIR=tmp_path / "files")


@pytest.fixture(name="app")
def _app(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> Quart:
    return create_app(settings, sessionmaker)


@pytest.fixture(name="client")
def _client(app: Quart) -> QuartClient:
    return app.test_client()


@dataclass(frozen=True)
class LoggedIn:
    id: UUID
    username: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Users:
    def __init__(self, client: QuartClient) -> None:
        self.client = client

    async def register(self, username: str | None = None, password: str = PASSWORD) -> Any:
        username = username or f"user{next(_counter)}"
        response = await self.client.post(
            "/api/register", json={"username": username, "password": password}
        )
        assert response.status_code == 200, await response.get_data()
        return await response.get_json()

    async def login(self, username: str | None = None) -> LoggedIn:
        user = await self.register(username)
        response = await self.client.post(
            "/api/login/access-token",
            form={"username": user["username"], "password": PASSWORD},
        )
        assert response.status_code == 200, await response.get_data()
        token = (await response.get_json())["access_token"]
        return LoggedIn(UUID(user["id"]), user["username"], token)


class Agents:
    def __init__(self, client: QuartClient, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.client = client
        self.sessionmaker = sessionmaker

    async def register(
        self,
        user: LoggedIn,
        *,
        name: str | None = None,
        description: str = "does things",
        input_parameters: Any = None,
        active: bool = False,
    ) -> Any:
        """Register an agent over the API; ``active`` marks it connected, as the router would."""
        body = {
            "name": name if name is not None else f"agent {next(_counter)}",
            "description": description,
            "input_parameters": input_parameters
            if input_parameters is not None
            else {"type": "function", "function": {"name": "x", "description": "d"}},
        }
        response = await self.client.post("/api/agents/register", json=body, headers=user.headers)
        assert response.status_code == 200, await response.get_data()
        agent = await response.get_json()
        if active:
            await self.set_active(UUID(agent["id"]))
        return agent

    async def set_active(self, agent_id: UUID, active: bool = True) -> None:
        async with self.sessionmaker.begin() as session:
            await session.execute(
                update(Agent).where(Agent.id == agent_id).values(is_active=active)
            )


@pytest.fixture(name="users")
def _users(client: QuartClient) -> Users:
    return Users(client)


@pytest.fixture(name="agents")
def _agents(client: QuartClient, sessionmaker: async_sessionmaker[AsyncSession]) -> Agents:
    return Agents(client, sessionmaker)
