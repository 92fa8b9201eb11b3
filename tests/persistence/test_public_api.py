from __future__ import annotations

from pathlib import Path

import pytest

import persistence


def test_exported_members() -> None:
    for name in persistence.__all__:
        assert getattr(persistence, name) is not None
    assert set(persistence.__all__) >= {
        "DatabaseSettings",
        "create_engine",
        "create_sessionmaker",
        "upgrade_to_head",
        "current_revision",
        "is_up_to_date",
        "open_embedded_postgres",
        "PersistenceError",
        "AlreadyExistsError",
        "NotFoundError",
    }


class TestSettings:
    def test_nothing_configured_is_embedded(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        monkeypatch.chdir(tmp_path)
        for var in ("DATABASE_URL", "SQLALCHEMY_ASYNC_DATABASE_URI", "POSTGRES_HOST", "PGDATA_DIR"):
            monkeypatch.delenv(var, raising=False)
        settings = persistence.DatabaseSettings()
        assert settings.is_embedded and settings.url() is None
        assert settings.resolved_pgdata_dir() == tmp_path / "var" / "pgdata"

    def test_postgres_variables(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setenv("POSTGRES_HOST", "db")
        monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret")
        monkeypatch.setenv("DATABASE_POOL_SIZE", "3")
        settings = persistence.DatabaseSettings()
        assert not settings.is_embedded and settings.pool_size == 3
        assert settings.url() == "postgresql+asyncpg://postgres:s3cret@db:5432/postgres"

    def test_database_url_wins(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("POSTGRES_HOST", "db")
        monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/d")
        assert persistence.DatabaseSettings().url() == "postgresql+asyncpg://u@h/d"
