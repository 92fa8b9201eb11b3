"""Schema migrations: alembic, configured in code so it works from an installed package."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ._db import create_engine
from ._exceptions import MigrationError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

__all__ = [
    "alembic_config",
    "current_revision",
    "downgrade_to",
    "head_revision",
    "is_up_to_date",
    "upgrade_to",
    "upgrade_to_head",
]


# The original's current release replaced its migration history with two revisions of
# its own. A database at its head has the schema of our second revision, so it is
# adopted there and upgraded from it; its first revision alone is no release we know.
_ORIGINAL_CURRENT_RELEASE = {"8403bb364491": "2b7f3c1d9e40"}
_ORIGINAL_INTERMEDIATE = "046a06a0b0a4"


def _adopt_original_current_release(conn: Connection) -> None:
    current = MigrationContext.configure(conn).get_current_revision()
    if current == _ORIGINAL_INTERMEDIATE:
        raise MigrationError(
            f"the database is at the original back-end's revision {current}, which no "
            "release shipped alone: upgrade it with the original to 8403bb364491 first"
        )
    ours = _ORIGINAL_CURRENT_RELEASE.get(current or "")
    if ours is not None:
        conn.execute(
            text("UPDATE alembic_version SET version_num = :ours WHERE version_num = :theirs"),
            {"ours": ours, "theirs": current},
        )


def _script_location() -> Path:
    spec = importlib.util.find_spec("migrations")
    if spec is None or spec.origin is None:
        raise MigrationError("the 'migrations' package is not installed")
    return Path(spec.origin).parent


def alembic_config(url: str | None = None) -> Config:
    """Return an alembic ``Config`` for our migrations, optionally bound to *url*."""
    config = Config()
    config.set_main_option("script_location", str(_script_location()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """Return the newest revision id of the migration scripts."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _with_connection(url: str, fn: object) -> object:
    engine = create_engine(url, pool_size=1, max_overflow=0)
    try:
        async with engine.connect() as conn:
            result = await conn.run_sync(fn)  # type: ignore[arg-type]
            await conn.commit()
            return result
    except (SQLAlchemyError, OSError) as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    finally:
        await engine.dispose()


async def upgrade_to(url: str, revision: str) -> None:
    """Apply migrations up to *revision*; waits until done.

    Raises:
        MigrationError: the database is unreachable or a migration failed.
    """

    def run(conn: Connection) -> None:
        _adopt_original_current_release(conn)
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

    await _with_connection(url, run)


async def upgrade_to_head(url: str) -> None:
    """Apply every pending migration; waits until done.

    Raises:
        MigrationError: the database is unreachable or a migration failed.
    """
    await upgrade_to(url, "head")


async def downgrade_to(url: str, revision: str) -> None:
    """Revert migrations down to *revision* (``"base"`` for an empty schema).

    Raises:
        MigrationError: the database is unreachable or a migration failed.
    """

    def run(conn: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, revision)

    await _with_connection(url, run)


async def current_revision(url: str) -> str | None:
    """Return the database's revision, or None for an unmigrated database.

    Raises:
        MigrationError: the database is unreachable.
    """

    def run(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    result = await _with_connection(url, run)
    return result if isinstance(result, str) else None


async def is_up_to_date(url: str) -> bool:
    """Return whether the database is at the newest revision.

    Raises:
        MigrationError: the database is unreachable.
    """
    return await current_revision(url) == head_revision()
