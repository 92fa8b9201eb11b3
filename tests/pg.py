"""Pytest plugin: a fresh PostgreSQL database per test run, and fixtures around it.

The server is ``postgresql://postgres@127.0.0.1:5432`` when it answers, else (or when
``TEST_POSTGRES=embedded``) the embedded one under ``.test-cache/pgdata``. The run's
database gets a unique name, is migrated to head at session start and dropped at the end.

Fixtures:
    database_url: asyncpg URL of the run's database (created once per run); every
        table is truncated after each test that used it, so rows written by a whole
        server under test never reach the next test.
    engine: an ``AsyncEngine`` on it, disposed after the test.
    db_session: an ``AsyncSession`` inside an outer transaction that is rolled back
        after the test; commits inside it only release savepoints.
    sessionmaker: a real ``async_sessionmaker`` for code that commits and runs
        concurrent sessions (tables are truncated after the test, as for
        ``database_url``).
    empty_database_url: asyncpg URL of a new database without any table, dropped
        after the test (for migration tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

import persistence

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
CACHE_DIR = Path(__file__).resolve().parent.parent / ".test-cache"


def _local_server_reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
    except OSError:
        return False

    async def probe() -> None:
        conn = await asyncpg.connect(LOCAL_SERVER, timeout=2)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError):
        return False
    return True


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def _server_url() -> Iterator[str]:
    if os.environ.get("TEST_POSTGRES") != "embedded" and _local_server_reachable():
        yield persistence.to_async_url(LOCAL_SERVER)
        return
    CACHE_DIR.mkdir(exist_ok=True)
    with persistence.EmbeddedPostgres(CACHE_DIR / "pgdata") as server:
        yield server.url()


@contextlib.contextmanager
def _new_database(server_url: str) -> Iterator[str]:
    name = f"genai_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def _run_database_url(_server_url: str) -> Iterator[str]:
    with _new_database(_server_url) as url:
        asyncio.run(persistence.upgrade_to_head(url))
        yield url


_TABLES = ", ".join(f'"{t.name}"' for t in persistence.Base.metadata.sorted_tables)


@pytest.fixture(name="database_url")
def _database_url(_run_database_url: str) -> Iterator[str]:
    yield _run_database_url
    # A connection a test leaked must fail the clean-up loudly, not hang it.
    asyncio.run(
        _admin(
            _run_database_url,
            f"SET lock_timeout = '10s'; TRUNCATE {_TABLES} RESTART IDENTITY CASCADE",
        )
    )


@pytest.fixture(name="empty_database_url")
def _empty_database_url(_server_url: str) -> Iterator[str]:
    with _new_database(_server_url) as url:
        yield url


@pytest.fixture(name="engine")
async def _engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = persistence.create_engine(database_url, pool_size=5, max_overflow=5)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture(name="db_session")
async def _db_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        try:
            yield session
        finally:
            await session.close()
            await outer.rollback()


@pytest.fixture(name="sessionmaker")
def _sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # The tables are truncated by ``database_url`` once the engine is disposed.
    return persistence.create_sessionmaker(engine)
