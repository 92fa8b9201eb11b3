"""Chat turns as they are read back: lists, events, undelivered replies, orphans, clean-up.

The chat actor writes a turn's row and events as the turn runs (`ChatTurnStore`); this
module reads them for the REST API and for a socket's replay, hands out replies that
reached no socket, finishes turns that no live chat actor will finish (a process that
died or stopped under them, or a cancel with nobody to take it), and deletes what is
past its retention. With several processes on one database, the turns of a process that
died are finished by its peers (`TurnHistory.finish_turns_of`, see ``processes.py``).
None of it is on a turn's hot path, but it is written as the hot paths are: straight
on the driver's connection, each method its own transaction(s), so the caller needs no
session.

Sequence numbers: a conversation's events are numbered from 1, gap-free, increasing,
and a new event takes the conversation's highest number plus one. The clean-up
therefore never deletes a conversation's newest event, however old: with it gone, the
numbers would start again below what clients have already seen.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from .._models import SenderType, TurnStatus, utcnow
from ._driver import DriverRepository
from .turns import TURNS_CHANNEL

if TYPE_CHECKING:
    pass

__all__ = [
    "FINAL_STATUSES",
    "OPEN_STATUSES",
    "CleanUp",
    "ReplyFor",
    "TurnEventRecord",
    "TurnHistory",
    "TurnRecord",
]

OPEN_STATUSES = frozenset({TurnStatus.QUEUED, TurnStatus.RUNNING})
"""Statuses of a turn that has not ended yet."""

FINAL_STATUSES = frozenset(TurnStatus) - OPEN_STATUSES
"""Statuses a turn keeps for good once it has one."""

ReplyFor = Callable[[uuid.UUID, uuid.UUID], tuple[str, Mapping[str, Any]]]
"""``reply_for(request_id, session_id)`` → (the master message's stored content, the
``agent_response`` frame object) of a turn finished without its master; the frame format
lives with the chat actor, not here."""

# Rows per statement of the clean-up: small enough that no statement holds its locks
# for long, large enough that a backlog of millions goes in a few hundred statements.
DELETE_BATCH = 5000

# Orphans finished per transaction: their row locks are held until it commits.
_ORPHAN_BATCH = 100

# A concurrent writer may take the number we computed for a new event: try again.
_SEQ_ATTEMPTS = 5

_FINAL = [status.value for status in FINAL_STATUSES]
_OPEN = [status.value for status in OPEN_STATUSES]

_TURN_COLUMNS = (
    "request_id, session_id, user_id, status, created_at, started_at, finished_at, delivered"
)

_LIST_TURNS = f"""
SELECT {_TURN_COLUMNS} FROM chatturns
WHERE user_id = $1 AND session_id = $2
ORDER BY created_at DESC, request_id DESC
LIMIT $3 OFFSET $4
"""

_GET_TURN = f"SELECT {_TURN_COLUMNS} FROM chatturns WHERE request_id = $1 AND user_id = $2"

_EVENT_COLUMNS = "session_id, seq, request_id, kind, data, created_at"

_TURN_EVENTS = f"""
SELECT {_EVENT_COLUMNS} FROM chatturnevents
WHERE request_id = $1 AND user_id = $2 AND seq > $3
ORDER BY seq
"""

_SESSION_EVENTS = f"""
SELECT {_EVENT_COLUMNS} FROM chatturnevents
WHERE session_id = $1 AND user_id = $2 AND seq > $3
ORDER BY seq
LIMIT $4
"""

# The reply is the data of the turn's final event, whose kind is the turn's status.
_UNDELIVERED = """
SELECT t.request_id, e.data -> 'reply' AS reply
FROM chatturns t
JOIN chatturnevents e
    ON e.session_id = t.session_id AND e.request_id = t.request_id AND e.kind = t.status
WHERE t.user_id = $1 AND t.session_id = $2 AND NOT t.delivered AND t.status = ANY($3::text[])
ORDER BY e.seq
"""

_MARK_DELIVERED = """
UPDATE chatturns SET delivered = true
WHERE request_id = ANY($1::uuid[]) AND NOT delivered
"""

# Another process's (or every) open turn, each locked; one that another finisher holds
# is skipped (it is that finisher's), so several can run at once without waiting.
# Batches PostgreSQL aborted as deadlocked, retried before the error is the caller's.
_DEADLOCK_RETRIES = 5

_LOCK_ORPHANS = """
SELECT request_id, session_id, user_id FROM chatturns
WHERE status = ANY($1::text[]) AND ($2::uuid IS NULL OR process_id IS DISTINCT FROM $2)
ORDER BY created_at, request_id
LIMIT $3
FOR UPDATE SKIP LOCKED
"""

# The open turns of the processes listed, and (when $3 is not null) those of no process
# seen within $3 seconds: NULL, a process without a row, or one whose row is that old.
# Locked and skipped as above, so that several peers finishing one dead process's turns
# at once finish each turn once.
_LOCK_TURNS_OF = """
SELECT t.request_id, t.session_id, t.user_id FROM chatturns t
WHERE t.status = ANY($1::text[])
    AND (
        t.process_id = ANY($2::uuid[])
        OR ($3::float8 IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM backendprocesses p
            WHERE p.id = t.process_id
                AND p.last_seen >= (now() AT TIME ZONE 'utc') - make_interval(secs => $3)
        ))
    )
ORDER BY t.created_at, t.request_id
LIMIT $4
FOR UPDATE OF t SKIP LOCKED
"""

# The live process that runs an open turn is asked to cancel it: $1 request, $2 the
# asking process, $3 the peer timeout (seconds). A row per notice sent.
_ASK_TO_CANCEL = f"""
SELECT pg_notify(
    '{TURNS_CHANNEL}',
    'cancel:' || t.process_id::text || ':' || t.user_id::text || ':' || t.session_id::text
        || ':' || t.request_id::text
)
FROM chatturns t JOIN backendprocesses p ON p.id = t.process_id
WHERE t.request_id = $1 AND t.status = ANY($4::text[]) AND t.process_id <> $2
    AND p.last_seen >= (now() AT TIME ZONE 'utc') - make_interval(secs => $3)
"""

# One turn, waiting for whoever holds it (the chat actor may be finishing it right now).
_LOCK_TURN = f"SELECT {_TURN_COLUMNS} FROM chatturns WHERE request_id = $1 FOR UPDATE"

_FINISH_TURN = f"""
UPDATE chatturns SET status = $2, finished_at = $3, delivered = false
WHERE request_id = $1
RETURNING {_TURN_COLUMNS}
"""

_ADD_MESSAGE = """
INSERT INTO chatmessages
    (id, request_id, sender_type, content, created_at, updated_at, conversation_id)
VALUES ($1, $2, $3, $4, $5, $5, $6)
"""

_ADD_EVENT = """
INSERT INTO chatturnevents (session_id, seq, request_id, user_id, kind, data, created_at)
SELECT $1, coalesce(max(seq), 0) + 1, $2, $3, $4, $5, $6
FROM chatturnevents WHERE session_id = $1
RETURNING seq
"""

# Events older than the cutoff, except each conversation's newest (see the module's text).
_DELETE_EVENTS = """
WITH doomed AS (
    SELECT e.session_id, e.seq FROM chatturnevents e
    WHERE e.created_at < $1
        AND e.seq < (SELECT max(n.seq) FROM chatturnevents n WHERE n.session_id = e.session_id)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM chatturnevents e USING doomed d
WHERE e.session_id = d.session_id AND e.seq = d.seq
"""

_DELETE_TURNS = """
WITH doomed AS (
    SELECT request_id FROM chatturns
    WHERE finished_at < $1 AND status = ANY($3::text[])
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM chatturns t USING doomed d WHERE t.request_id = d.request_id
"""


@dataclasses.dataclass(frozen=True, slots=True)
class TurnRecord:
    """A stored turn (``chatturns`` without its process)."""

    request_id: uuid.UUID
    session_id: uuid.UUID
    user_id: uuid.UUID
    status: TurnStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    delivered: bool

    @property
    def is_final(self) -> bool:
        """Whether the turn has ended (its status never changes again)."""
        return self.status in FINAL_STATUSES


@dataclasses.dataclass(frozen=True, slots=True)
class TurnEventRecord:
    """A stored event of a turn; ``seq`` numbers it within its conversation."""

    session_id: uuid.UUID
    seq: int
    request_id: uuid.UUID
    kind: str
    data: Mapping[str, Any]
    created_at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class CleanUp:
    """What one `TurnHistory.delete_older_than` removed."""

    events: int
    turns: int


class TurnHistory(DriverRepository):
    """Reads of chat turns, and the writes that finish or forget them (see the module).

    Args:
        sessionmaker: Where connections come from (the server's pool).
    """

    async def list_turns(
        self, user_id: uuid.UUID, session_id: uuid.UUID, *, limit: int = 100, offset: int = 0
    ) -> list[TurnRecord]:
        """Return the user's turns of one conversation, newest first (none if foreign)."""
        async with self._connect() as driver:
            rows = await driver.fetch(_LIST_TURNS, user_id, session_id, limit, offset)
        return [_turn(row) for row in rows]

    async def get_turn(self, user_id: uuid.UUID, request_id: uuid.UUID) -> TurnRecord | None:
        """Return the user's turn, or None if it is unknown or another user's."""
        async with self._connect() as driver:
            row = await driver.fetchrow(_GET_TURN, request_id, user_id)
        return None if row is None else _turn(row)

    async def events(
        self, user_id: uuid.UUID, request_id: uuid.UUID, after_seq: int = 0
    ) -> list[TurnEventRecord]:
        """Return the events of the user's turn with ``seq`` above ``after_seq``, in order."""
        async with self._connect() as driver:
            rows = await driver.fetch(_TURN_EVENTS, request_id, user_id, after_seq)
        return [_event(row) for row in rows]

    async def session_events(
        self, user_id: uuid.UUID, session_id: uuid.UUID, after_seq: int, limit: int = 1000
    ) -> list[TurnEventRecord]:
        """Return up to ``limit`` events of the user's conversation after ``after_seq``,
        in order (a socket's replay: ask again after the last one until fewer come)."""
        async with self._connect() as driver:
            rows = await driver.fetch(_SESSION_EVENTS, session_id, user_id, after_seq, limit)
        return [_event(row) for row in rows]

    async def undelivered(
        self, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, dict[str, Any]]]:
        """Return (request id, ``agent_response`` frame object) of each finished turn of
        the user's conversation whose reply reached no socket, oldest first."""
        async with self._connect() as driver:
            rows = await driver.fetch(_UNDELIVERED, user_id, session_id, _FINAL)
        return [(row["request_id"], _json(row["reply"])) for row in rows if row["reply"]]

    async def mark_delivered(self, request_ids: Iterable[uuid.UUID]) -> int:
        """Record that these turns' replies reached a socket; return how many changed."""
        ids = list(request_ids)
        if not ids:
            return 0
        async with self._connect() as driver:
            status = await driver.execute(_MARK_DELIVERED, ids)
        return _row_count(status)

    async def finish_orphans(
        self,
        *,
        process_id: uuid.UUID | None,
        status: TurnStatus = TurnStatus.INTERRUPTED,
        reply_for: ReplyFor,
    ) -> int:
        """End the open turns no live chat actor will end, as ``status``.

        Each gets ``finished_at``, the master message ``reply_for`` gives (stored in the
        conversation's history), a final event ``{"reply": frame}`` and ``delivered``
        false, so the session's next socket is sent the reply. Idempotent; several
        callers may run at once (each turn is finished by one of them).

        Args:
            process_id: Finish the turns of every process but this one (a process that
                has the database alone, at its start); None: every open turn.
            status: The final status, normally ``interrupted``.
            reply_for: Builds each turn's stored content and frame (see `ReplyFor`).

        Returns:
            How many turns this call finished.
        """
        _check_final(status)
        return await self._finish_batches(
            status, reply_for, _LOCK_ORPHANS, _OPEN, process_id, _ORPHAN_BATCH
        )

    async def finish_turns_of(
        self,
        process_ids: Iterable[uuid.UUID],
        *,
        status: TurnStatus = TurnStatus.INTERRUPTED,
        reply_for: ReplyFor,
        unowned_after: float | None = None,
    ) -> int:
        """End the open turns of processes that are gone, as :meth:`finish_orphans` does.

        For several processes on one database: a process finishes the turns of the peers
        it found gone (``backendprocesses``), never those of a live one. Idempotent;
        several callers may run at once (each turn is finished by one of them).

        Turns without a process (``process_id`` NULL: written by a caller that gave none,
        such as an older release) belong to no live process that could be told apart, so
        they count as unowned: they are finished with the turns of processes that have
        no row, only when ``unowned_after`` is given — the sweep a process makes once at
        its start, which replaces the single-process `finish_orphans`.

        Args:
            process_ids: The processes found gone.
            status: The final status, normally ``interrupted``.
            reply_for: Builds each turn's stored content and frame (see `ReplyFor`).
            unowned_after: Also finish the turns whose process has not beaten within
                this many seconds: NULL, without a row, or with a row that old; None:
                only those of ``process_ids``.

        Returns:
            How many turns this call finished.
        """
        _check_final(status)
        ids = list(process_ids)
        if not ids and unowned_after is None:
            return 0
        after = None if unowned_after is None else float(unowned_after)
        return await self._finish_batches(
            status, reply_for, _LOCK_TURNS_OF, _OPEN, ids, after, _ORPHAN_BATCH
        )

    async def _finish_batches(
        self, status: TurnStatus, reply_for: ReplyFor, lock: str, *args: Any
    ) -> int:
        """Lock open turns with ``lock`` (its last parameter the batch's size) and finish
        them, a transaction a batch, until a batch comes back short.

        Each batch finishes its turns in the order of their conversations: finishers
        that run at once then wait for each other's events in one order, never in a
        cycle. A deadlock PostgreSQL still reports (other writers) costs the batch a
        retry, not the caller an error.
        """
        finished = 0
        deadlocks = 0
        while True:
            try:
                async with self._connect() as driver, driver.transaction():
                    rows = await driver.fetch(lock, *args)
                    for row in sorted(rows, key=lambda r: (r["session_id"], r["request_id"])):
                        await _finish(driver, row["request_id"], status, reply_for)
            except asyncpg.DeadlockDetectedError:
                deadlocks += 1
                if deadlocks > _DEADLOCK_RETRIES:
                    raise
                continue
            finished += len(rows)
            if len(rows) < args[-1]:
                return finished

    async def ask_to_cancel(
        self, request_id: uuid.UUID, *, process_id: uuid.UUID, peer_timeout: float
    ) -> bool:
        """Ask the process that runs the open turn ``request_id`` to cancel it, if it is
        another live one (its notice on ``genai_turns``, heard by its `TurnRelay`).

        Returns:
            Whether such a process was asked; False: the turn is this process's, has
            no live process, or is not open.
        """
        async with self._connect() as driver:
            rows = await driver.fetch(
                _ASK_TO_CANCEL, request_id, process_id, float(peer_timeout), _OPEN
            )
        return bool(rows)

    async def finish_orphan(
        self, request_id: uuid.UUID, status: TurnStatus, reply_for: ReplyFor
    ) -> TurnRecord | None:
        """End one turn as :meth:`finish_orphans` does, if it is still open.

        Waits for a writer that holds the turn. The caller checks the turn's owner.

        Returns:
            The turn as it is afterwards (with the final status it had if it had ended
            already), or None if it is unknown.
        """
        _check_final(status)
        async with self._connect() as driver, driver.transaction():
            row = await driver.fetchrow(_LOCK_TURN, request_id)
            if row is None:
                return None
            if row["status"] not in _OPEN:
                return _turn(row)
            return await _finish(driver, request_id, status, reply_for)

    async def delete_older_than(self, cutoff: datetime, *, batch: int = DELETE_BATCH) -> CleanUp:
        """Delete events created before ``cutoff`` and finished turns finished before it.

        Runs ``batch`` rows per statement, each committing on its own, so that a large
        backlog never holds many locks for long. A conversation's newest event stays
        (see the module's text); rows another transaction holds are left for next time.

        Returns:
            How many events and turns were deleted.
        """
        events = turns = 0
        async with self._connect() as driver:
            while True:
                deleted = _row_count(await driver.execute(_DELETE_EVENTS, cutoff, batch))
                events += deleted
                if deleted < batch:
                    break
            while True:
                deleted = _row_count(await driver.execute(_DELETE_TURNS, cutoff, batch, _FINAL))
                turns += deleted
                if deleted < batch:
                    break
        return CleanUp(events=events, turns=turns)


async def _finish(
    driver: Any, request_id: uuid.UUID, status: TurnStatus, reply_for: ReplyFor
) -> TurnRecord:
    """Finish a turn whose row this transaction has locked (it is open)."""
    now = utcnow()
    turn = _turn(await driver.fetchrow(_FINISH_TURN, request_id, status.value, now))
    content, frame = reply_for(turn.request_id, turn.session_id)
    await driver.execute(
        _ADD_MESSAGE,
        uuid.uuid4(),
        request_id,
        SenderType.MASTER_AGENT.value,
        content,
        now,
        turn.session_id,
    )
    data = json.dumps({"reply": frame}, ensure_ascii=False, default=str)
    for attempt in range(_SEQ_ATTEMPTS):
        try:
            # A savepoint: a number taken meanwhile must not abort the whole transaction.
            async with driver.transaction():
                await driver.fetchval(
                    _ADD_EVENT, turn.session_id, request_id, turn.user_id, status.value, data, now
                )
            break
        except asyncpg.UniqueViolationError:
            if attempt == _SEQ_ATTEMPTS - 1:
                raise
    return turn


def _check_final(status: TurnStatus) -> None:
    if status not in FINAL_STATUSES:
        raise ValueError(f"{status!r} is not a final status")


def _turn(row: Any) -> TurnRecord:
    return TurnRecord(
        request_id=row["request_id"],
        session_id=row["session_id"],
        user_id=row["user_id"],
        status=TurnStatus(row["status"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        delivered=row["delivered"],
    )


def _event(row: Any) -> TurnEventRecord:
    return TurnEventRecord(
        session_id=row["session_id"],
        seq=row["seq"],
        request_id=row["request_id"],
        kind=row["kind"],
        data=_json(row["data"]),
        created_at=row["created_at"],
    )


def _json(value: Any) -> Any:
    # The engine's codec decodes jsonb; a connection without it gives the text.
    return json.loads(value) if isinstance(value, str) else value


def _row_count(status: str) -> int:
    """Return the row count of a command status such as ``DELETE 5000``."""
    return int(status.rsplit(" ", 1)[-1])
