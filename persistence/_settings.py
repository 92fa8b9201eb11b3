"""Database settings, read from the environment and ``.env``."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url

__all__ = ["DatabaseSettings", "to_async_url"]


class DatabaseSettings(BaseSettings):
    """Where the database is and how to pool connections to it.

    ``DATABASE_URL`` (or the original's ``SQLALCHEMY_ASYNC_DATABASE_URI``) wins; otherwise
    a URL is built from ``POSTGRES_HOST``/``PORT``/``USER``/``PASSWORD``/``DB`` when
    ``POSTGRES_HOST`` is set. With neither, the database is the embedded one in
    ``PGDATA_DIR``.
    """

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=True, populate_by_name=True
    )

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "SQLALCHEMY_ASYNC_DATABASE_URI")
    )
    postgres_host: str | None = Field(default=None, validation_alias="POSTGRES_HOST")
    postgres_port: int = Field(default=5432, validation_alias="POSTGRES_PORT")
    postgres_user: str = Field(default="postgres", validation_alias="POSTGRES_USER")
    postgres_password: str = Field(default="postgres", validation_alias="POSTGRES_PASSWORD")
    postgres_db: str = Field(default="postgres", validation_alias="POSTGRES_DB")
    pool_size: int = Field(default=10, ge=1, validation_alias="DATABASE_POOL_SIZE")
    max_overflow: int = Field(default=10, ge=0, validation_alias="DATABASE_MAX_OVERFLOW")
    echo: bool = Field(default=False, validation_alias="DATABASE_ECHO")
    pgdata_dir: Path = Field(default=Path("var/pgdata"), validation_alias="PGDATA_DIR")

    @property
    def is_embedded(self) -> bool:
        """Whether no external database is configured."""
        return self.database_url is None and self.postgres_host is None

    def url(self) -> str | None:
        """Return the external database's asyncpg URL, or None in embedded mode."""
        if self.database_url is not None:
            return to_async_url(self.database_url)
        if self.postgres_host is None:
            return None
        return URL.create(
            "postgresql+asyncpg",
            username=self.postgres_user,
            password=self.postgres_password,
            host=self.postgres_host,
            port=self.postgres_port,
            database=self.postgres_db,
        ).render_as_string(hide_password=False)

    def resolved_pgdata_dir(self) -> Path:
        """Return the embedded data directory as an absolute path (relative to the cwd)."""
        return self.pgdata_dir.expanduser().resolve()


def to_async_url(url: str | URL) -> str:
    """Return *url* with the asyncpg driver (``postgresql://`` becomes ``postgresql+asyncpg://``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {parsed.render_as_string()}")
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
