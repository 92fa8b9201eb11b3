"""Server processes sharing one database: their rows, heartbeats, and the dead among them.

Each ``serve`` process keeps one row of ``backendprocesses`` (`ProcessTable.beat`, every
few seconds). A row whose ``last_seen`` is older than the peer timeout belongs to a
process that died without a clean stop (`ProcessTable.gone`): its peers finish the chat
turns it left open (`TurnHistory.finish_turns_of`), then delete its row
(`ProcessTable.forget`). A clean stop deletes its own row (`ProcessTable.leave`).

Every time here is the database's clock (``now()``, as naive UTC), never the caller's:
processes on several machines compare their beats on one clock, so a machine whose
clock drifts cannot make a live peer look dead.

Written as `TurnHistory` is: straight on the driver's connection, each method one
statement that commits on its own, so the caller needs no session.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ._driver import DriverRepository

if TYPE_CHECKING:
    pass

__all__ = ["Beat", "ProcessIdentity", "ProcessRecord", "ProcessTable"]

# The database's clock as the schema stores time (naive UTC), whatever the session's zone.
_NOW = "(now() AT TIME ZONE 'utc')"

# A row a peer forgot while this process was cut off comes back with its first beat;
# ``xmax = 0`` tells an inserted row from an updated one.
_BEAT = f"""
INSERT INTO backendprocesses AS p
    (id, started_at, last_seen, http_url, owns_router, pid, hostname)
VALUES ($1, coalesce($2::timestamp, {_NOW}), {_NOW}, $3, $4, $5, $6)
ON CONFLICT (id) DO UPDATE SET
    last_seen = EXCLUDED.last_seen,
    http_url = EXCLUDED.http_url,
    owns_router = EXCLUDED.owns_router,
    pid = EXCLUDED.pid,
    hostname = EXCLUDED.hostname
RETURNING p.started_at, p.last_seen, (p.xmax = 0) AS inserted
"""

_PEERS = f"""
SELECT id, started_at, last_seen, http_url, owns_router, pid, hostname,
    extract(epoch FROM {_NOW} - last_seen)::float8 AS seconds_ago
FROM backendprocesses
WHERE last_seen >= {_NOW} - make_interval(secs => $1) AND id IS DISTINCT FROM $2::uuid
ORDER BY started_at, id
"""

_GONE = f"""
SELECT id FROM backendprocesses
WHERE last_seen < {_NOW} - make_interval(secs => $1)
ORDER BY last_seen, id
"""

# A row that beat again since it was found gone is a live process: it stays.
_FORGET = f"""
DELETE FROM backendprocesses
WHERE id = ANY($1::uuid[])
    AND ($2::float8 IS NULL OR last_seen < {_NOW} - make_interval(secs => $2))
"""

_LEAVE = "DELETE FROM backendprocesses WHERE id = $1"


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """What a process says about itself in its row.

    Attributes:
        id: The process (``AppServices.process_id``; written on the turns it runs).
        http_url: Where its HTTP face answers, for operators (None: not said).
        owns_router: Whether the embedded router runs in it.
        pid: Its operating-system process id.
        hostname: The machine it runs on.
    """

    id: uuid.UUID
    http_url: str | None = None
    owns_router: bool = False
    pid: int | None = None
    hostname: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Beat:
    """What one `ProcessTable.beat` wrote.

    Attributes:
        started_at: When the row was first written (the database's clock).
        last_seen: This beat's time (the database's clock).
        inserted: Whether the row was written anew: the first beat, or one after the
            peers took the process for dead and deleted its row.
    """

    started_at: datetime
    last_seen: datetime
    inserted: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ProcessRecord:
    """A live process's row, and how long ago it beat by the database's clock."""

    id: uuid.UUID
    started_at: datetime
    last_seen: datetime
    http_url: str | None
    owns_router: bool
    pid: int | None
    hostname: str | None
    seconds_ago: float


class ProcessTable(DriverRepository):
    """The rows of ``backendprocesses`` (see the module).

    Args:
        sessionmaker: Where connections come from (the server's pool).
    """

    async def beat(self, process: ProcessIdentity, *, started_at: datetime | None = None) -> Beat:
        """Write the process's row with ``last_seen`` now, inserting it if it is missing.

        Args:
            process: Who beats.
            started_at: The start the first beat returned, kept if the row must be
                written anew; None: now.
        """
        async with self._connect() as driver:
            row = await driver.fetchrow(
                _BEAT,
                process.id,
                started_at,
                process.http_url,
                process.owns_router,
                process.pid,
                process.hostname,
            )
        return Beat(
            started_at=row["started_at"], last_seen=row["last_seen"], inserted=row["inserted"]
        )

    async def peers(
        self, within: float, *, exclude: uuid.UUID | None = None
    ) -> list[ProcessRecord]:
        """Return the processes that beat within the last ``within`` seconds, oldest first.

        Args:
            within: Seconds without a beat after which a process counts as gone (the
                peer timeout).
            exclude: A process to leave out (the caller itself).
        """
        async with self._connect() as driver:
            rows = await driver.fetch(_PEERS, float(within), exclude)
        return [_record(row) for row in rows]

    async def gone(self, after: float) -> list[uuid.UUID]:
        """Return the ids of the processes whose last beat is older than ``after`` seconds
        (the peer timeout), longest silent first."""
        async with self._connect() as driver:
            rows = await driver.fetch(_GONE, float(after))
        return [row["id"] for row in rows]

    async def forget(self, ids: Iterable[uuid.UUID], *, older_than: float | None = None) -> int:
        """Delete these processes' rows; return how many went.

        Args:
            ids: The processes (normally what `gone` returned).
            older_than: Delete only the rows still without a beat for this many seconds,
                so that a process that came back meanwhile keeps its row; None: all.
        """
        ids = list(ids)
        if not ids:
            return 0
        timeout = None if older_than is None else float(older_than)
        async with self._connect() as driver:
            status = await driver.execute(_FORGET, ids, timeout)
        return int(status.rsplit(" ", 1)[-1])

    async def leave(self, process_id: uuid.UUID) -> bool:
        """Delete the process's own row (a clean stop); return whether it was there."""
        async with self._connect() as driver:
            status: str = await driver.execute(_LEAVE, process_id)
        return status.rsplit(" ", 1)[-1] != "0"


def _record(row: Any) -> ProcessRecord:
    return ProcessRecord(
        id=row["id"],
        started_at=row["started_at"],
        last_seen=row["last_seen"],
        http_url=row["http_url"],
        owns_router=row["owns_router"],
        pid=row["pid"],
        hostname=row["hostname"],
        seconds_ago=max(0.0, float(row["seconds_ago"])),
    )
