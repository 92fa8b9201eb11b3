"""Listening to a PostgreSQL notification channel on a connection of its own.

The catalogue's versions (``genai_catalogue``) and the agent logs stored by other
processes (``genai_logs``) both arrive this way: a connection outside the pool, held for
as long as the block runs, whose loss the caller learns from an event, so that it can
stop trusting what it heard and listen again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ._settings import to_async_url

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["listen"]


@contextlib.asynccontextmanager
async def listen(
    url: str | URL, channel: str, on_payload: Callable[[str], None]
) -> AsyncIterator[anyio.Event]:
    """Call ``on_payload`` with each notification of ``channel`` for the block's duration.

    ``on_payload`` runs in the event loop, synchronously, in the order PostgreSQL sends
    the notifications (the order of the notifying transactions' commits); it must not
    block. Listening has begun when the block starts: whatever commits from then on is
    heard.

    Yields:
        An event set when the connection is lost; nothing more is heard then.

    Raises:
        OSError, asyncpg.PostgresError: The database cannot be reached.
    """
    # A connection of its own, outside the pool: it is held for as long as we listen.
    engine = create_async_engine(to_async_url(url), poolclass=NullPool)
    lost = anyio.Event()

    def on_notification(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        on_payload(payload)

    try:
        connection = await engine.connect()
        try:
            raw = await connection.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            driver.add_termination_listener(lambda _conn: lost.set())
            await driver.add_listener(channel, on_notification)
            yield lost
        finally:
            # A lost connection may fail to close; it is gone either way.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(1.0),
                contextlib.suppress(Exception),
            ):
                await connection.close()
    finally:
        with anyio.CancelScope(shield=True):
            await engine.dispose()
