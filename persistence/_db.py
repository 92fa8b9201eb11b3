"""Engine and session factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.util import greenlet_spawn

from ._settings import to_async_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = [
    "bound_engine",
    "create_engine",
    "create_sessionmaker",
    "driver_connection",
    "is_database_unavailable",
    "open_driver_connection",
]

# Sessions run in UTC so that server-side now() defaults are naive UTC like ours.
_SERVER_SETTINGS = {"timezone": "UTC"}


def create_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    echo: bool = False,
    **kwargs: Any,
) -> AsyncEngine:
    """Create an asyncpg-backed engine with a connection pool.

    Args:
        url: any PostgreSQL URL; the driver is forced to asyncpg.
        pool_size: connections kept open.
        max_overflow: extra connections allowed under load.
        echo: log every statement.
        **kwargs: passed on to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Returns:
        The engine; nothing connects until it is used. Dispose it when done.
    """
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("server_settings", _SERVER_SETTINGS)
    engine = _create_async_engine(
        to_async_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        echo=echo,
        # Echo and error messages show statements without their values: parameters
        # carry agent tokens, API-key ciphertexts and password hashes.
        hide_parameters=True,
        connect_args=connect_args,
        **kwargs,
    )
    # Instead of a pre-ping (a round trip per checkout), ask the driver whether the
    # socket is still open: a server that restarted or cut us has closed it, and the
    # event loop has noticed by the time a pooled connection is handed out again.
    event.listen(engine.sync_engine.pool, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    if dbapi_connection.driver_connection.is_closed():
        # Its siblings in the pool went with the same server: replace them all.
        raise sqlalchemy.exc.InvalidatePoolError("pooled connection was closed")


async def driver_connection(session: AsyncSession) -> Any:
    """Return the asyncpg connection under ``session`` (in its transaction, if any)."""
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


@asynccontextmanager
async def open_driver_connection(engine: AsyncEngine) -> AsyncIterator[Any]:
    """Check a connection out of ``engine``'s pool and yield its asyncpg connection.

    Without a session or a transaction around them, each statement commits on its own:
    far cheaper than a session for a request or a step of a statement or two.
    A connection lost under a statement is dropped from the pool.
    """
    raw = await engine.raw_connection()
    try:
        yield raw.driver_connection
    except (OSError, asyncpg.exceptions.ConnectionDoesNotExistError):
        await greenlet_spawn(raw.invalidate)
        raise
    finally:
        # Without a transaction to roll back, returning it never waits on the server,
        # so nothing (not a cancellation either) interrupts the return.
        await greenlet_spawn(raw.close)


def bound_engine(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """Return the engine ``sessionmaker``'s sessions are bound to (for driver statements).

    Raises:
        TypeError: It is not bound to an `AsyncEngine`.
    """
    engine = sessionmaker.kw.get("bind")
    if not isinstance(engine, AsyncEngine):
        raise TypeError("the sessionmaker is not bound to an AsyncEngine")
    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Return the session factory; callers own transactions (``async with sm.begin()``)."""
    return async_sessionmaker(engine, expire_on_commit=False)


# What an unreachable, restarting or overloaded server looks like from here: the socket
# is refused or reset (ConnectionError), the server refuses connections while it starts
# or stops, an open connection dies under a statement (SQLAlchemy wraps that as an
# Operational or InterfaceError and invalidates the pool), or no pooled connection
# frees up in time.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    ConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)


def is_database_unavailable(error: BaseException) -> bool:
    """Tell whether ``error`` means the database cannot be reached right now.

    Such a failure is the server's condition, not the request's fault: callers answer
    "try again later" (HTTP 503) instead of reporting an internal error.
    """
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, _UNAVAILABLE)
