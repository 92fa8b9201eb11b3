"""Embedded PostgreSQL: a real server from the ``pgserver`` package, in a data directory.

pgserver shares one server per data directory between handles and processes, initialises
the directory on first use and keeps it afterwards, so a second start reuses the data.
It listens on a Unix socket only.

Run as root, pgserver runs the server as a dedicated system user (``pgserver``, created
with ``useradd`` when missing) and owns the data directory to it. That user must reach
the data directory and pgserver's binaries, and pgserver's own answer is to add
``o+rx`` to every parent directory up to ``/``: a checkout under ``/root`` would become
traversable by everyone. We never let it: as root, its chmod of parents is replaced by a
check, and whatever sits behind a directory closed to other users is served from
:data:`ROOT_HOME` (``/var/lib/genai-backend``) instead, a directory made for it: the
binaries are copied there once, and the data directory becomes a link to
``ROOT_HOME/pgdata-<hash of its path>``, so it is still found where it was asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from ._exceptions import EmbeddedPostgresError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

__all__ = ["ROOT_HOME", "EmbeddedPostgres", "open_embedded_postgres"]

_log = logging.getLogger(__name__)

_START_ATTEMPTS = 10
_START_RETRY_SECONDS = 0.5

ROOT_HOME = Path("/var/lib/genai-backend")
"""Where, run as root, what the ``pgserver`` user cannot otherwise reach is kept."""


def _import_pgserver() -> Any:
    # pgserver picks a lock directory at import time and warns when XDG_RUNTIME_DIR is
    # unset (it falls back to /tmp/runtime-<uid>, which is what we want).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver._commands
        import pgserver.postgres_server

    if _is_root():
        # Check instead of chmod: a parent closed to other users stays closed.
        pgserver.postgres_server.ensure_prefix_permissions = _require_traversable
    return pgserver


def _is_root() -> bool:
    return os.name == "posix" and os.geteuid() == 0


def _closed_parent(path: Path) -> Path | None:
    """The first parent of *path* that other users cannot traverse, if any."""
    for parent in path.parents:
        if not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def _require_traversable(path: Path) -> None:
    closed = _closed_parent(path)
    if closed is not None:
        raise EmbeddedPostgresError(
            f"as root, the embedded PostgreSQL runs as the user pgserver, which cannot "
            f"reach {path}: {closed} is closed to other users (we do not open it)"
        )


def _make_root_home() -> None:
    ROOT_HOME.mkdir(mode=0o755, parents=True, exist_ok=True)
    _require_traversable(ROOT_HOME / "x")


def _reachable_binaries(pgserver: Any) -> None:
    """As root, serve pgserver's binaries from ROOT_HOME if the user cannot reach them."""
    install = Path(pgserver._commands.POSTGRES_BIN_PATH).parent
    if _closed_parent(install) is None:
        return
    _make_root_home()
    copy = ROOT_HOME / f"pginstall-{_pgserver_version()}"
    if not copy.is_dir():
        # Copied beside and renamed into place, so a half-made copy is never used.
        building = ROOT_HOME / f".pginstall-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        shutil.copytree(install, building, symlinks=True)
        building.chmod(0o755)
        try:
            building.rename(copy)
        except OSError:
            shutil.rmtree(building, ignore_errors=True)  # another start made it first
    # pgserver reads the path at every command, from these two modules.
    pgserver._commands.POSTGRES_BIN_PATH = copy / "bin"
    pgserver.postgres_server.POSTGRES_BIN_PATH = copy / "bin"


def _pgserver_version() -> str:
    from importlib.metadata import version

    return version("pgserver")


def _sweep_abandoned() -> None:
    """Remove the stand-ins of temporary data directories that are gone.

    Tests and benchmarks start servers in temporary directories and delete them; their
    data in ROOT_HOME would stay behind. Only a link that lived in the temporary
    directory is taken as gone for good: data asked for anywhere else is kept.
    """
    temp = Path(tempfile.gettempdir()).resolve()
    for marker in ROOT_HOME.glob("pgdata-*.link"):
        link = Path(marker.read_text().strip())
        stand_in = marker.with_suffix("")
        if (
            link.is_relative_to(temp)
            and not os.path.lexists(link)
            and not (stand_in / "postmaster.pid").exists()
        ):
            shutil.rmtree(stand_in, ignore_errors=True)
            marker.unlink(missing_ok=True)


def _reachable_data_dir(data_dir: Path) -> Path:
    """As root, the data directory the pgserver user can reach, standing for *data_dir*.

    Raises:
        EmbeddedPostgresError: *data_dir* is a directory already, behind a closed parent.
    """
    if _closed_parent(data_dir.resolve()) is None:
        return data_dir.resolve()
    if data_dir.exists() and not data_dir.is_symlink():
        _require_traversable(data_dir)
    _make_root_home()
    _sweep_abandoned()
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    stand_in = ROOT_HOME / f"pgdata-{digest}"
    if not data_dir.is_symlink():
        stand_in.with_suffix(".link").write_text(f"{data_dir}\n")
        data_dir.symlink_to(stand_in, target_is_directory=True)
    # pgserver makes the directory itself (and owns it to its user).
    return data_dir.resolve()


class EmbeddedPostgres:
    """A handle on the embedded server of one data directory.

    ``start()`` and ``stop()`` block (initdb takes seconds); call them from a worker
    thread in async code, or use :func:`open_embedded_postgres`.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start (or join) the server, initialising the directory if new; return its URL.

        Raises:
            EmbeddedPostgresError: initdb or the server failed.
        """
        if self._server is not None:
            return self.url()
        pgserver = _import_pgserver()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        served = self.data_dir
        if _is_root():
            _reachable_binaries(pgserver)
            served = _reachable_data_dir(self.data_dir)
        new = not (served / "PG_VERSION").exists()
        if new:
            # initdb takes seconds with nothing else to show: say why the start waits.
            _log.info("first start: creating the database in %s (takes a few seconds)", served)
        started = time.perf_counter()
        for attempt in range(_START_ATTEMPTS):
            try:
                self._server = pgserver.get_server(served, cleanup_mode="stop")
                break
            except AssertionError as exc:
                # pgserver asserts the postmaster reports "ready" right after pg_ctl
                # returns, or when it finds one still running; a server that is still
                # starting, or still stopping after a restart, says otherwise for a
                # moment. pgserver caches the failed handle, so drop it and ask again.
                pgserver.PostgresServer._instances.pop(served, None)
                if attempt == _START_ATTEMPTS - 1:
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL in {self.data_dir} did not become ready"
                    ) from exc
                time.sleep(_START_RETRY_SECONDS)
            except (OSError, subprocess.SubprocessError) as exc:
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL failed to start in {self.data_dir}: {exc}"
                ) from exc
        if new:
            _log.info("database created in %.1f s", time.perf_counter() - started)
        return self.url()

    def url(self, database: str = "postgres") -> str:
        """Return the asyncpg URL of *database* on the running server."""
        if self._server is None:
            raise EmbeddedPostgresError("embedded PostgreSQL is not running")
        uri = make_url(self._server.get_uri(database))
        return uri.set(drivername="postgresql+asyncpg", password=None).render_as_string(
            hide_password=False
        )

    def stop(self) -> None:
        """Stop the server unless another process still holds it; waits for shutdown."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.cleanup()
        except (OSError, subprocess.SubprocessError) as exc:
            raise EmbeddedPostgresError(f"embedded PostgreSQL failed to stop: {exc}") from exc

    @property
    def running(self) -> bool:
        """Whether this handle holds a started server."""
        return self._server is not None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def open_embedded_postgres(data_dir: str | Path) -> AsyncIterator[EmbeddedPostgres]:
    """Run the embedded server for the duration of the block.

    The blocking start and stop run in a worker thread.

    Raises:
        EmbeddedPostgresError: the server failed to start or stop.
    """
    server = EmbeddedPostgres(data_dir)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)
