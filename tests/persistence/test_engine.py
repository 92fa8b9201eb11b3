"""The engine's pool hands out only live connections, without a round trip to check."""

from __future__ import annotations

import anyio
from sqlalchemy import text

from persistence import create_engine


class TestPool:
    async def test_connections_cut_by_the_server_are_replaced_on_checkout(
        self, database_url: str
    ) -> None:
        engine = create_engine(database_url, pool_size=2, max_overflow=0)
        admin = create_engine(database_url, pool_size=1, max_overflow=0)
        try:
            # Two pooled connections, as after a burst of requests.
            async with engine.connect() as a, engine.connect() as b:
                pids = {
                    (await a.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
                    (await b.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
                }
            async with admin.connect() as conn:
                for pid in pids:
                    await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await anyio.sleep(0.2)  # the event loop reads the server's goodbye
            # Both are handed out again with no error: each was found closed and replaced.
            async with engine.connect() as a, engine.connect() as b:
                fresh = {
                    (await a.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
                    (await b.execute(text("SELECT pg_backend_pid()"))).scalar_one(),
                }
            assert fresh.isdisjoint(pids)
        finally:
            await engine.dispose()
            await admin.dispose()

    async def test_a_live_connection_is_reused_without_a_ping(self, database_url: str) -> None:
        engine = create_engine(database_url, pool_size=1, max_overflow=0)
        try:
            queries: list[str] = []
            async with engine.connect() as conn:
                raw = await conn.get_raw_connection()
                driver = raw.driver_connection
                assert driver is not None
                driver.add_query_logger(lambda record: queries.append(record.query))
            for _ in range(3):
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            # One transaction per checkout, ours: a pre-ping would open one more each
            # (BEGIN, ``;``, ROLLBACK: three round trips before every use).
            assert queries.count("BEGIN;") == 3
        finally:
            await engine.dispose()
