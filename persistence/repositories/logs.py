"""Agent logs: batched inserts, owner-scoped reads, and the notices that tell other
processes which logs were stored (``genai_logs``)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, String, case, cast, func, select, text
from sqlalchemy.orm import aliased

from .._models import Agent, ChatConversation, Log, utcnow
from ._base import Repository

if TYPE_CHECKING:
    pass

__all__ = [
    "LOGS_CHANNEL",
    "LogEntry",
    "LogNotice",
    "LogRepository",
    "NewLog",
    "id_ranges",
    "log_notices",
]

LOGS_CHANNEL = "genai_logs"

# PostgreSQL refuses a payload of 8000 bytes or more; a notice stays far below.
_NOTICE_BYTES = 4000

IdRange = tuple[int, int]

# One statement for any number of rows: the columns travel as seven arrays, so the
# statement text (and its prepared plan) is the same for every batch and there is no
# bound-parameter limit. Rows are inserted in the arrays' order, so their serial ids
# ascend in that order. The owner is the reads' rule (see `LogRepository`), evaluated
# in the same round trip.
_ALLOCATE_IDS = text(
    "SELECT nextval(pg_get_serial_sequence('logs', 'id')) FROM generate_series(1, :count)"
)

_INSERT_MANY = text(
    """
    WITH stored AS (
        INSERT INTO logs (id, session_id, request_id, agent_id, creator_id, message,
                          log_level, created_at, updated_at)
        SELECT coalesce(r.id, nextval(pg_get_serial_sequence('logs', 'id'))),
               r.session_id, r.request_id, r.agent_id, r.creator_id, r.message, r.log_level,
               r.created_at, r.created_at
        FROM unnest(
            CAST(:ids AS bigint[]),
            CAST(:session_ids AS uuid[]), CAST(:request_ids AS uuid[]),
            CAST(:agent_ids AS text[]), CAST(:creator_ids AS uuid[]),
            CAST(:messages AS text[]), CAST(:log_levels AS text[]),
            CAST(:created_ats AS timestamp[])
        ) WITH ORDINALITY AS r(id, session_id, request_id, agent_id, creator_id, message,
                               log_level, created_at, n)
        ORDER BY r.n
        ON CONFLICT (id) DO NOTHING
        RETURNING id, session_id, agent_id, creator_id
    ), found AS (
        -- Rows of these ids stored by an earlier attempt (the statement's snapshot does
        -- not see the rows it inserts itself, so none is counted twice).
        SELECT id, session_id, agent_id, creator_id FROM stored
        UNION ALL
        SELECT id, session_id, agent_id, creator_id FROM logs
        WHERE id = ANY(CAST(:ids AS bigint[]))
    )
    SELECT coalesce(array_agg(s.id ORDER BY s.id), '{}'),
           coalesce(array_agg(
               CASE WHEN c.session_id IS NOT NULL THEN c.creator_id
                    ELSE coalesce(a.creator_id, s.creator_id) END
               ORDER BY s.id
           ), '{}')
    FROM found s
    LEFT JOIN chatconversations c ON c.session_id = s.session_id
    LEFT JOIN agents a ON CAST(a.id AS text) = s.agent_id
    """
)


# The reads' owner rule (see `LogRepository`) in SQL, over ``logs l``.
_OWNED = """
    SELECT l.id, l.session_id, l.request_id, l.agent_id, l.log_level, l.message,
           CASE WHEN c.session_id IS NOT NULL THEN c.creator_id
                ELSE coalesce(a.creator_id, l.creator_id) END,
           l.created_at, l.updated_at
    FROM logs l
    LEFT JOIN chatconversations c ON c.session_id = l.session_id
    LEFT JOIN agents a ON CAST(a.id AS text) = l.agent_id
"""

# The bounds let the (session_id, id) index find the rows; the ranges keep only the
# notified ids (other processes' ids may lie between them).
_IN_RANGES = text(
    _OWNED
    + """
    WHERE l.session_id = ANY(CAST(:sessions AS uuid[]))
      AND l.id BETWEEN :low AND :high
      AND EXISTS (
          SELECT 1 FROM unnest(CAST(:firsts AS bigint[]), CAST(:lasts AS bigint[])) AS r(f, t)
          WHERE l.id BETWEEN r.f AND r.t
      )
    ORDER BY l.id
    """
)

_SINCE = text(
    "SELECT * FROM ("
    + _OWNED
    + """
    WHERE l.session_id = ANY(CAST(:sessions AS uuid[]))
      AND l.id > :after
      AND l.created_at >= (now() AT TIME ZONE 'UTC') - make_interval(secs => :seconds)
    ORDER BY l.id DESC
    LIMIT :limit
    ) AS newest ORDER BY id
    """
)

_NOTIFY = text(
    "SELECT pg_notify('" + LOGS_CHANNEL + "', p) FROM unnest(CAST(:payloads AS text[])) AS p"
)


@dataclasses.dataclass(frozen=True, slots=True)
class LogNotice:
    """One ``genai_logs`` notification: ``process`` stored the logs of these id ranges.

    The payload is ``<process id>:<ranges>``, each range ``first-last`` or a lone id,
    comma-separated (``6f0c…:120-163,170``): ids only, never rows, so that it stays far
    under PostgreSQL's 8000-byte limit (`log_notices` splits a batch if needed).
    """

    process: uuid.UUID
    ranges: tuple[IdRange, ...]

    @classmethod
    def parse(cls, payload: str) -> LogNotice:
        """Read a payload.

        Raises:
            ValueError: It is not a notice.
        """
        process, _, body = payload.partition(":")
        ranges: list[IdRange] = []
        for part in body.split(","):
            first, dash, last = part.partition("-")
            low = int(first)
            high = int(last) if dash else low
            if high < low:
                raise ValueError(f"empty range {part!r}")
            ranges.append((low, high))
        return cls(uuid.UUID(process), tuple(ranges))

    @property
    def last(self) -> int:
        """The highest id it names."""
        return max(high for _, high in self.ranges)


def id_ranges(ids: Iterable[int]) -> list[IdRange]:
    """Return the sorted ids as ranges of consecutive ids."""
    ranges: list[IdRange] = []
    for log_id in sorted(set(ids)):
        if ranges and ranges[-1][1] == log_id - 1:
            ranges[-1] = (ranges[-1][0], log_id)
        else:
            ranges.append((log_id, log_id))
    return ranges


def log_notices(process: uuid.UUID, ids: Iterable[int]) -> list[str]:
    """Return the payloads that tell of the stored ``ids`` (usually one: a batch draws
    consecutive ids unless another process draws at the same instant)."""
    prefix = f"{process}:"
    payloads: list[str] = []
    parts: list[str] = []
    size = len(prefix)
    for low, high in id_ranges(ids):
        part = str(low) if low == high else f"{low}-{high}"
        if parts and size + len(part) + 1 > _NOTICE_BYTES:
            payloads.append(prefix + ",".join(parts))
            parts, size = [], len(prefix)
        parts.append(part)
        size += len(part) + 1
    if parts:
        payloads.append(prefix + ",".join(parts))
    return payloads


@dataclasses.dataclass(frozen=True, slots=True)
class NewLog:
    """One log line to store."""

    session_id: uuid.UUID
    request_id: uuid.UUID
    agent_id: str | None
    message: str
    log_level: str
    creator_id: uuid.UUID | None = None
    created_at: datetime | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class LogEntry:
    """A stored log line; ``creator_id`` is the user it belongs to."""

    id: int
    session_id: uuid.UUID
    request_id: uuid.UUID
    agent_id: str | None
    log_level: str
    message: str
    creator_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class LogRepository(Repository):
    """Agent logs.

    A log belongs to the user who owns its session's conversation; without a
    conversation, to the creator of the agent that logged it (then to the row's own
    ``creator_id``).
    """

    async def allocate_ids(self, count: int) -> list[int]:
        """Draw ``count`` ids for logs from the table's sequence (one round trip).

        A writer that draws its batch's ids before the first attempt can repeat the
        insert after an error whose outcome it cannot know (the connection lost around
        the commit) without storing any log twice: see `add_many`.
        """
        if count <= 0:
            return []
        result = await self.session.execute(_ALLOCATE_IDS, {"count": count})
        return [int(row[0]) for row in result]

    async def add_many(
        self, logs: Iterable[NewLog], *, ids: Sequence[int] | None = None
    ) -> list[LogEntry]:
        """Insert the logs in one statement and return them as stored, in order.

        Each entry carries its id and its owner (``creator_id``), found by the rule
        the reads use. The rows themselves keep the ``creator_id`` they were given.

        Args:
            logs: The logs.
            ids: Their ids, drawn with `allocate_ids`; a log whose id is stored already
                (by an attempt whose answer was lost) is not written again, and is
                returned like the others (the insert is idempotent). None: new ids.
        """
        batch = logs if isinstance(logs, list) else list(logs)
        if not batch:
            return []
        if ids is not None and len(ids) != len(batch):
            raise ValueError(f"{len(batch)} logs but {len(ids)} ids")
        now = utcnow()
        stamps = [log.created_at or now for log in batch]
        result = await self.session.execute(
            _INSERT_MANY,
            {
                "ids": list(ids) if ids is not None else [None] * len(batch),
                "session_ids": [log.session_id for log in batch],
                "request_ids": [log.request_id for log in batch],
                "agent_ids": [log.agent_id for log in batch],
                "creator_ids": [log.creator_id for log in batch],
                "messages": [log.message for log in batch],
                "log_levels": [log.log_level for log in batch],
                "created_ats": stamps,
            },
        )
        stored_ids, owners = result.one()
        if ids is None:
            given: Sequence[int] = stored_ids  # new ids come in the batch's order
        else:
            given = ids
        owner_of = dict(zip(stored_ids, owners, strict=True))
        return [
            LogEntry(
                id=log_id,
                session_id=log.session_id,
                request_id=log.request_id,
                agent_id=log.agent_id,
                log_level=log.log_level,
                message=log.message,
                creator_id=owner_of[log_id],
                created_at=stamp,
                updated_at=stamp,
            )
            for log_id, log, stamp in zip(given, batch, stamps, strict=True)
            if log_id in owner_of
        ]

    async def notify_stored(self, process: uuid.UUID, ids: Iterable[int]) -> None:
        """Tell every listening process, when the transaction commits, that ``process``
        stored the logs of ``ids`` (nothing is sent if it rolls back)."""
        payloads = log_notices(process, ids)
        if payloads:
            await self.session.execute(_NOTIFY, {"payloads": payloads})

    async def in_ranges(
        self, ranges: Sequence[IdRange], sessions: Iterable[uuid.UUID]
    ) -> list[LogEntry]:
        """Return the logs of these id ranges and sessions, oldest first, each with its
        owner as ``creator_id`` (one statement)."""
        wanted = list(sessions)
        if not ranges or not wanted:
            return []
        result = await self.session.execute(
            _IN_RANGES,
            {
                "sessions": wanted,
                "low": min(low for low, _ in ranges),
                "high": max(high for _, high in ranges),
                "firsts": [low for low, _ in ranges],
                "lasts": [high for _, high in ranges],
            },
        )
        return [LogEntry(*row) for row in result.all()]

    async def since(
        self, after: int, sessions: Iterable[uuid.UUID], *, limit: int, seconds: float
    ) -> list[LogEntry]:
        """Return the newest logs of these sessions whose id is above ``after``: at most
        ``limit``, stored within the last ``seconds`` (by the database's clock), oldest
        first, each with its owner as ``creator_id``."""
        wanted = list(sessions)
        if not wanted or limit <= 0:
            return []
        result = await self.session.execute(
            _SINCE, {"sessions": wanted, "after": after, "limit": limit, "seconds": seconds}
        )
        return [LogEntry(*row) for row in result.all()]

    async def last_id(self) -> int:
        """Return the highest id stored (0 if none)."""
        found = await self.session.scalar(select(func.coalesce(func.max(Log.id), 0)))
        return int(found or 0)

    async def list_for_request(
        self, request_id: uuid.UUID, *, owner_id: uuid.UUID
    ) -> list[LogEntry]:
        """Return the owner's logs of one request, oldest first."""
        return await self._list(Log.request_id == request_id, owner_id)

    async def list_for_session(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID
    ) -> list[LogEntry]:
        """Return the owner's logs of one session, oldest first."""
        return await self._list(Log.session_id == session_id, owner_id)

    async def _list(self, where: ColumnElement[bool], owner_id: uuid.UUID) -> list[LogEntry]:
        conversation = aliased(ChatConversation)
        agent = aliased(Agent)
        owner = case(
            (conversation.session_id.is_not(None), conversation.creator_id),
            else_=func.coalesce(agent.creator_id, Log.creator_id),
        )
        stmt = (
            select(Log, owner.label("owner"))
            .outerjoin(conversation, conversation.session_id == Log.session_id)
            .outerjoin(agent, cast(agent.id, String) == Log.agent_id)
            .where(where, owner == owner_id)
            .order_by(Log.id)
        )
        return [
            LogEntry(
                id=log.id,
                session_id=log.session_id,
                request_id=log.request_id,
                agent_id=log.agent_id,
                log_level=log.log_level,
                message=log.message,
                creator_id=owner,
                created_at=log.created_at,
                updated_at=log.updated_at,
            )
            for log, owner in (await self.session.execute(stmt)).all()
        ]
