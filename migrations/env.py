"""Alembic environment: async, targeting ``persistence.Base.metadata``.

``persistence`` passes an open connection in ``config.attributes["connection"]``; the
``alembic`` command line instead gets a URL (``sqlalchemy.url`` or ``DATABASE_URL``) and
this module connects itself.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from persistence import Base, DatabaseSettings, create_engine

target_metadata = Base.metadata
config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url") or DatabaseSettings().url()
    if url is None:
        raise RuntimeError("no database configured: set DATABASE_URL or sqlalchemy.url")
    return url


async def _run_online() -> None:
    engine = create_engine(_url(), pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run)
            await conn.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif (connection := config.attributes.get("connection")) is not None:
    _run(connection)
else:
    asyncio.run(_run_online())
