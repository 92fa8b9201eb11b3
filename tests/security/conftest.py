"""Security tests run on asyncio only, against the real app and a real PostgreSQL.

They reuse the web fixtures (``settings``, ``app``, ``client``, ``users``, ``agents``)
and add ``world``: two users, each owning one of every kind of object.
"""

from __future__ import annotations

import pytest
from quart.testing import QuartClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..web.conftest import Agents, Users, _agents, _app, _client, _settings, _users
from ..web.conftest import anyio_backend as anyio_backend
from .world import World, build_world

__all__ = ["_agents", "_app", "_client", "_settings", "_users"]


@pytest.fixture(name="world")
async def _world(
    client: QuartClient,
    users: Users,
    agents: Agents,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> World:
    return await build_world(client, users, agents, sessionmaker)
