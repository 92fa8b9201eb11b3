from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

import persistence
from persistence._embedded import ROOT_HOME


@pytest.fixture(name="data_dir")
def _data_dir(tmp_path: Path) -> Iterator[Path]:
    data_dir = tmp_path / "pgdata"
    yield data_dir
    # Run as root behind a closed directory, the data lives in ROOT_HOME: remove it too.
    if data_dir.is_symlink():
        shutil.rmtree(data_dir.resolve(), ignore_errors=True)


async def _query(url: str, sql: str) -> object:
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


class TestEmbeddedPostgres:
    async def test_start_restart_and_stop(self, data_dir: Path) -> None:
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


def _modes(path: Path) -> dict[Path, str]:
    return {parent: stat.filemode(parent.stat().st_mode) for parent in path.parents}


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="only root opens parents")
async def test_as_root_no_parent_directory_is_opened(tmp_path: Path) -> None:
    closed = tmp_path / "home"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)  # whatever the umask
    data_dir = closed / "checkout" / "var" / "pgdata"
    before = _modes(closed / "x")
    try:
        async with persistence.open_embedded_postgres(data_dir) as server:
            await persistence.upgrade_to_head(server.url())
            await _query(
                server.url(), "INSERT INTO projects (id, name) VALUES (gen_random_uuid(), 'kept')"
            )
        # The data went where the server's user may go; the link keeps it at hand.
        assert data_dir.is_symlink() and data_dir.resolve().parent == ROOT_HOME
        assert _modes(closed / "x") == before
        async with persistence.open_embedded_postgres(data_dir) as server:
            assert await _query(server.url(), "SELECT name FROM projects") == "kept"
        assert _modes(closed / "x") == before
    finally:
        if data_dir.is_symlink():
            shutil.rmtree(data_dir.resolve(), ignore_errors=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="only root opens parents")
async def test_as_root_existing_data_behind_a_closed_parent_is_refused(tmp_path: Path) -> None:
    closed = tmp_path / "home"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    data_dir = closed / "pgdata"
    data_dir.mkdir()
    with pytest.raises(persistence.EmbeddedPostgresError, match="closed to other users"):
        async with persistence.open_embedded_postgres(data_dir):
            pass
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700


def _present(path: Path) -> bool:
    return os.path.lexists(path)


def _closed_dir(path: Path) -> Path:
    path.mkdir(mode=0o700)
    path.chmod(0o700)  # whatever the umask
    return path


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="only root relocates")
async def test_as_root_the_data_of_a_deleted_temporary_directory_is_removed(
    tmp_path: Path,
) -> None:
    gone = _closed_dir(tmp_path / "gone")
    async with persistence.open_embedded_postgres(gone / "pgdata"):
        pass
    stand_in = (gone / "pgdata").resolve()
    assert stand_in.parent == ROOT_HOME and _present(stand_in)
    shutil.rmtree(gone)  # as a test run's temporary directories are
    kept = _closed_dir(tmp_path / "kept")
    try:
        async with persistence.open_embedded_postgres(kept / "pgdata"):
            pass
        assert not _present(stand_in)
    finally:
        shutil.rmtree((kept / "pgdata").resolve(), ignore_errors=True)
