"""This package's tests run on asyncio only (SQLAlchemy and Quart are asyncio-bound)."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import persistence


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(name="alice")
async def _alice(db_session: AsyncSession) -> persistence.User:
    return await persistence.UserRepository(db_session).add("alice", "hash-a")


@pytest.fixture(name="bob")
async def _bob(db_session: AsyncSession) -> persistence.User:
    return await persistence.UserRepository(db_session).add("bob", "hash-b")


async def add_user(sessionmaker: async_sessionmaker[AsyncSession], name: str) -> persistence.User:
    """Add a user in a transaction of its own (committed, unlike ``alice`` and ``bob``)."""
    async with sessionmaker.begin() as session:
        return await persistence.UserRepository(session).add(name, "hash")
