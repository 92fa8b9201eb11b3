"""Embedded PostgreSQL: a real server from the ``pgserver`` package, in a data directory.

pgserver shares one server per data directory between handles and processes, initialises
the directory on first use and keeps it afterwards, so a second start reuses the data.
It listens on a Unix socket only. Run as root, pgserver runs the server as a dedicated
system user (``pgserver``, created with ``useradd`` when missing), owns the data
directory to it and opens traversal rights (``o+rx``) on the directory's parents.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from ._exceptions import EmbeddedPostgresError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

__all__ = ["EmbeddedPostgres", "open_embedded_postgres"]

_START_ATTEMPTS = 10
_START_RETRY_SECONDS = 0.5


def _import_pgserver() -> Any:
    # pgserver picks a lock directory at import time and warns when XDG_RUNTIME_DIR is
    # unset (it falls back to /tmp/runtime-<uid>, which is what we want).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    return pgserver


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
        for attempt in range(_START_ATTEMPTS):
            try:
                self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
                break
            except AssertionError as exc:
                # pgserver asserts the postmaster reports "ready" right after pg_ctl
                # returns, or when it finds one still running; a server that is still
                # starting, or still stopping after a restart, says otherwise for a
                # moment. pgserver caches the failed handle, so drop it and ask again.
                pgserver.PostgresServer._instances.pop(self.data_dir, None)
                if attempt == _START_ATTEMPTS - 1:
                    raise EmbeddedPostgresError(
                        f"embedded PostgreSQL in {self.data_dir} did not become ready"
                    ) from exc
                time.sleep(_START_RETRY_SECONDS)
            except (OSError, subprocess.SubprocessError) as exc:
                raise EmbeddedPostgresError(
                    f"embedded PostgreSQL failed to start in {self.data_dir}: {exc}"
                ) from exc
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
