from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

import persistence


async def _query(url: str, sql: str) -> object:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


class TestEmbeddedPostgres:
    async def test_start_restart_and_stop(self, tmp_path: Path) -> None:
        data_dir = tmp_path / "pgdata"
        async with persistence.open_embedded_postgres(data_dir) as server:
            assert server.running
            url = server.url()
            await persistence.upgrade_to_head(url)
            await _query(url, "INSERT INTO projects (id, name) VALUES (gen_random_uuid(), 'kept')")
        assert not server.running
        assert not (data_dir / "postmaster.pid").exists()
        with pytest.raises(persistence.EmbeddedPostgresError):
            server.url()

        async with persistence.open_embedded_postgres(data_dir) as server:
            assert await persistence.is_up_to_date(server.url())
            assert await _query(server.url(), "SELECT name FROM projects") == "kept"
        assert not (data_dir / "postmaster.pid").exists()
