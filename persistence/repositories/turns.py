"""A chat turn's reads and writes, in as few round trips as the turn allows.

A turn runs on every chat message, so its database work is the chat's latency: one
statement to look the conversation and the model choice up, one to store the user's
message (plus one to create the conversation on its first turn), and one that stores
the master's reply and lists the request's files. Each statement commits on its own
(there is nothing to roll back together), and they run straight on the driver's
connection with its prepared-statement cache, without the ORM's unit of work: the
rules are those of `ChatRepository`, `ConfigRepository` and `FileRepository`, which
the REST API uses (and which the tests compare them with).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from .._db import bound_engine, open_driver_connection
from .._exceptions import NotFoundError, TurnConflictError
from .._models import File, SenderType, utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = [
    "TURNS_CHANNEL",
    "ChatTurnStore",
    "ModelChoice",
    "SessionAttachment",
    "TurnLookup",
    "TurnRowWrite",
    "TurnStatements",
    "TurnWrites",
]

TURNS_CHANNEL = "genai_turns"
"""Notified when a turn ends: ``<process id>:<user id>:<session id>:<request id>``."""


@dataclasses.dataclass(frozen=True, slots=True)
class ModelChoice:
    """The model config a message names, with its provider's name, key and metadata."""

    provider_name: str
    api_key: str | None
    provider_metadata: Mapping[str, Any]
    name: str
    model: str
    temperature: float
    system_prompt: str
    user_prompt: str | None
    max_last_messages: int
    credentials: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class TurnLookup:
    """What a turn needs to know before it stores anything.

    Attributes:
        conversation_exists: A conversation with this session id exists (anyone's).
        conversation_owner: Its creator, if it exists and has one.
        choice: The named config of the user, None if there is none.
        provider_exists: The user has a provider of the name the message gave (False
            when it gave none).
        stored: The user's message was stored by the same statement
            (`TurnStatements.look_up_and_store`).
    """

    conversation_exists: bool
    conversation_owner: uuid.UUID | None
    choice: ModelChoice | None
    provider_exists: bool
    stored: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class TurnRowWrite:
    """A turn's row as it should be: inserted, or its status moved on (a final status
    is never changed again)."""

    request_id: uuid.UUID
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    delivered: bool


@dataclasses.dataclass(frozen=True, slots=True)
class TurnWrites:
    """Turn rows and events a statement of the turn stores on the way.

    ``events`` are ``(seq, request_id, kind, data as JSON text, created_at)``. They are
    stored only for a conversation of the statement's user; an event stored again
    replaces its data.
    """

    events: list[tuple[int, uuid.UUID, str, str, datetime]] = dataclasses.field(
        default_factory=list
    )
    turns: list[TurnRowWrite] = dataclasses.field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.turns)

    def parameters(self, process_id: uuid.UUID | None) -> tuple[Any, ...]:
        """The eleven parameters of `_writes`, in order."""
        events, turns = self.events, self.turns
        return (
            [e[0] for e in events],
            [e[1] for e in events],
            [e[2] for e in events],
            [e[3] for e in events],
            [e[4] for e in events],
            [t.request_id for t in turns],
            [t.status for t in turns],
            [t.created_at for t in turns],
            [t.started_at for t in turns],
            [t.finished_at for t in turns],
            [t.delivered for t in turns],
            process_id,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class SessionAttachment:
    """What a socket joining a conversation is given.

    Attributes:
        last_seq: The conversation's last stored event number (0: none).
        events: The user's events after the number asked for, ``(seq, request_id, kind,
            data as JSON text, created_at)`` in order (none if none was asked for).
        undelivered: The replies of finished turns that reached no socket, as
            ``(request_id, frame object as JSON text)``; they count as delivered now.
    """

    last_seq: int
    events: list[tuple[int, uuid.UUID, str, str, datetime]]
    undelivered: list[tuple[uuid.UUID, str]]


_FINAL = "('answered', 'failed', 'cancelled', 'interrupted')"


def _writes(first: int, condition: str) -> str:
    """The CTEs that store a `TurnWrites` (parameters ``$first`` on, see `parameters`)
    when ``condition`` holds; the conversation is ``$1`` and the user ``$2``."""
    n = [f"${first + i}" for i in range(12)]
    return f"""
written_events AS (
    INSERT INTO chatturnevents (session_id, seq, request_id, user_id, kind, data, created_at)
    SELECT $1, e.seq, e.request_id, $2, e.kind, e.data, e.at
    FROM unnest({n[0]}::bigint[], {n[1]}::uuid[], {n[2]}::text[], {n[3]}::jsonb[],
        {n[4]}::timestamp[]) AS e(seq, request_id, kind, data, at)
    WHERE {condition}
    -- An event stored again carries amended data (never another turn's number).
    ON CONFLICT (session_id, seq) DO UPDATE SET data = EXCLUDED.data
    WHERE chatturnevents.request_id = EXCLUDED.request_id
    RETURNING seq
),
written_turns AS (
    INSERT INTO chatturns (request_id, session_id, user_id, status, created_at, started_at,
        finished_at, delivered, process_id)
    SELECT t.request_id, $1, $2, t.status, t.created_at, t.started_at, t.finished_at,
        t.delivered, {n[11]}
    FROM unnest({n[5]}::uuid[], {n[6]}::text[], {n[7]}::timestamp[], {n[8]}::timestamp[],
        {n[9]}::timestamp[], {n[10]}::boolean[])
        AS t(request_id, status, created_at, started_at, finished_at, delivered)
    WHERE {condition}
    ON CONFLICT (request_id) DO UPDATE SET
        status = EXCLUDED.status,
        started_at = coalesce(chatturns.started_at, EXCLUDED.started_at),
        finished_at = EXCLUDED.finished_at,
        delivered = chatturns.delivered OR EXCLUDED.delivered
    -- A final status stays; a queued one only ever inserts (a flush that carried it
    -- may commit after the turn's own statement said it runs).
    WHERE chatturns.status NOT IN {_FINAL} AND chatturns.user_id = $2
        AND EXCLUDED.status <> 'queued'
)"""


# Writes go only into a conversation of the statement's user.
_OWNED = "EXISTS (SELECT FROM chatconversations WHERE session_id = $1 AND creator_id = $2)"

_STORE_WRITES = f"WITH {_writes(3, _OWNED)} SELECT 1"

_CHOICE_COLUMNS = """
    c.name, c.model, c.temperature, c.system_prompt, c.user_prompt, c.max_last_messages,
    c.credentials, p.name AS provider_name, p.api_key, p.provider_metadata
"""

_CONVERSATION_COLUMNS = """
    (SELECT creator_id FROM chatconversations WHERE session_id = $1) AS owner,
    EXISTS (SELECT FROM chatconversations WHERE session_id = $1) AS conversation_exists
"""

# The config of this name under the user's provider of that name (one at most: names
# are unique per provider and provider names per user).
_LOOK_UP = f"""
SELECT {_CONVERSATION_COLUMNS},
    EXISTS (SELECT FROM modelproviders WHERE creator_id = $2 AND name = $4) AS provider_exists,
    {_CHOICE_COLUMNS}
FROM (SELECT) AS one
LEFT JOIN (modelconfigs c JOIN modelproviders p ON p.id = c.provider_id)
    ON c.creator_id = $2 AND c.name = $3 AND p.creator_id = $2 AND p.name = $4
"""

# The older message form names no provider: the user's newest config of this name,
# with whatever provider it belongs to.
_LOOK_UP_BY_NAME = f"""
SELECT {_CONVERSATION_COLUMNS}, false AS provider_exists, {_CHOICE_COLUMNS}
FROM (SELECT) AS one
LEFT JOIN LATERAL (
    SELECT * FROM modelconfigs
    WHERE creator_id = $2 AND name = $3
    ORDER BY created_at DESC, id DESC
    LIMIT 1
) AS c ON true
LEFT JOIN modelproviders p ON p.id = c.provider_id
"""


_FOUND_OWNED = "EXISTS (SELECT FROM found WHERE found.owner = $2)"


def _numbers_checked(first: int) -> str:
    """A column that refuses its whole statement (``genai_turn_events_taken()`` raises)
    when the owner's conversation was found but not every event of the writes (from
    ``$first``) went in: another turn's events have some of their numbers, so this
    process's numbering is behind another's. Nothing of the statement is then stored.

    The check reads what the insert did, not what the statement's snapshot shows: an
    event that another process commits while this statement waits is seen too.
    """
    return f"""CASE WHEN {_FOUND_OWNED}
        AND (SELECT count(*) FROM written_events) < cardinality(${first}::bigint[])
        THEN genai_turn_events_taken() END AS numbers_checked"""


def _looked_up(look_up: str, first: int) -> str:
    """``look_up``, storing the turn's writes (parameters from ``$first``) in the same
    statement when the conversation is the user's."""
    return f"""
WITH found AS ({look_up}),
{_writes(first, _FOUND_OWNED)}
SELECT found.*, false AS stored, {_numbers_checked(first)} FROM found
"""


def _looked_up_and_stored(look_up: str, first: int) -> str:
    """``look_up``, storing the user's message in the same statement when the owner's
    conversation and config are found and the provider's key is the one given.

    Its parameters follow the look-up's, from ``$first``: message id, request id,
    content, time, expected key; then the turn's writes (stored when the conversation
    is the user's).
    """
    n = [f"${first + i}" for i in range(5)]
    return f"""
WITH found AS ({look_up}),
{_writes(first + 5, _FOUND_OWNED)},
stored AS (
    INSERT INTO chatmessages
        (id, request_id, sender_type, content, created_at, updated_at, conversation_id)
    SELECT {n[0]}, {n[1]}, 'user'::sendertype, {n[2]}, {n[3]}, {n[3]}, $1 FROM found
    WHERE found.owner = $2 AND found.name IS NOT NULL AND found.provider_name IS NOT NULL
        AND found.api_key IS NOT DISTINCT FROM {n[4]}::text
    RETURNING id
)
SELECT found.*, EXISTS (SELECT FROM stored) AS stored, {_numbers_checked(first + 5)}
FROM found
"""


_LOOK_UP_WRITING = _looked_up(_LOOK_UP, 5)
_LOOK_UP_BY_NAME_WRITING = _looked_up(_LOOK_UP_BY_NAME, 4)
_LOOK_UP_AND_STORE = _looked_up_and_stored(_LOOK_UP, 5)
_LOOK_UP_BY_NAME_AND_STORE = _looked_up_and_stored(_LOOK_UP_BY_NAME, 4)

# The turn's writes go in with the new conversation ($2 is its owner).
_CREATE_CONVERSATION = f"""
WITH created AS (
    INSERT INTO chatconversations (session_id, title, creator_id, created_at, updated_at)
    VALUES ($1, $3, $2, $4, $4)
    ON CONFLICT (session_id) DO NOTHING
    RETURNING session_id
),
{_writes(5, "EXISTS (SELECT FROM created)")}
SELECT session_id FROM created
"""

_ADD_MESSAGE = """
INSERT INTO chatmessages
    (id, request_id, sender_type, content, created_at, updated_at, conversation_id)
VALUES ($1, $2, $3, $4, $5, $5, $6)
"""

_FILE_COLUMNS = """
    id, session_id, request_id, creator_id, mimetype, original_name, internal_name,
    internal_id, from_agent
"""

# The request's files, and the turn's writes. $1 conversation, $2 owner, $3 request.
_FILES_OF_REQUEST = f"""
WITH {_writes(4, _OWNED)}
SELECT {_FILE_COLUMNS} FROM files WHERE request_id = $3 AND creator_id = $2 ORDER BY id
"""

# The reply, the turn's writes, and the request's files as they are once it is stored
# (agents upload them during the turn), in one statement. $1 conversation, $2 owner,
# $3 request, $4 message id, $5 content, $6 time.
_ADD_REPLY = f"""
WITH reply AS (
    INSERT INTO chatmessages
        (id, request_id, sender_type, content, created_at, updated_at, conversation_id)
    VALUES ($4, $3, 'master_agent'::sendertype, $5, $6, $6, $1)
    RETURNING id
),
{_writes(7, _OWNED)}
SELECT {_FILE_COLUMNS} FROM files WHERE request_id = $3 AND creator_id = $2 ORDER BY id
"""

# A finished turn's reply, for the sockets of another process; it counts as delivered.
_REPLY_OF = f"""
WITH delivered AS (
    UPDATE chatturns SET delivered = true
    WHERE request_id = $3 AND user_id = $2 AND status IN {_FINAL}
    RETURNING request_id
)
SELECT (data -> 'reply')::text FROM chatturnevents
WHERE session_id = $1 AND request_id = $3 AND user_id = $2 AND kind IN {_FINAL}
ORDER BY seq DESC LIMIT 1
"""

# The last number, and the user's events after $3, at most $4.
_EVENTS_AFTER = """
SELECT 0 AS part, coalesce(max(seq), 0) AS seq, NULL::uuid AS request_id, NULL AS kind,
    NULL AS data, NULL::timestamp AS created_at
FROM chatturnevents WHERE session_id = $1
UNION ALL (
    SELECT 1, seq, request_id, kind, data::text, created_at FROM chatturnevents
    WHERE session_id = $1 AND user_id = $2 AND seq > $3
    ORDER BY seq LIMIT $4
)"""

# A socket joins: the last number, the user's events after $3 (none if $3 is -1),
# and the undelivered replies, marked delivered by the same statement.
_ATTACH = f"""
WITH undelivered AS (
    UPDATE chatturns SET delivered = true
    WHERE session_id = $1 AND user_id = $2 AND NOT delivered AND status IN {_FINAL}
    RETURNING request_id
)
{_EVENTS_AFTER}
UNION ALL
SELECT 2, e.seq, e.request_id, e.kind, (e.data -> 'reply')::text, e.created_at
FROM chatturnevents e JOIN undelivered u ON u.request_id = e.request_id
WHERE e.session_id = $1 AND e.kind IN {_FINAL}
ORDER BY part, seq
"""


# A turn that waited for its conversation's running turn (another process's) takes the
# running slot: $1 conversation, $2 owner, $3 request, $4 time, $5 process. Nothing if
# the turn has ended meanwhile (cancelled elsewhere) or the conversation is not the
# owner's; the running turn of another raises (``chatturns_one_running``).
_CLAIM = f"""
INSERT INTO chatturns (request_id, session_id, user_id, status, created_at, started_at,
    delivered, process_id)
SELECT $3, $1, $2, 'running', $4, $4, false, $5
WHERE EXISTS (SELECT FROM chatconversations WHERE session_id = $1 AND creator_id = $2)
ON CONFLICT (request_id) DO UPDATE SET
    status = 'running',
    started_at = EXCLUDED.started_at,
    process_id = EXCLUDED.process_id
WHERE chatturns.status NOT IN {_FINAL} AND chatturns.user_id = $2
RETURNING request_id
"""

_RUNNING = """
SELECT request_id, process_id FROM chatturns WHERE session_id = $1 AND status = 'running'
"""

_NOTIFY = "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload"

_ENDED_SINCE = f"""
SELECT process_id, user_id, session_id, request_id FROM chatturns
WHERE session_id = ANY($1::uuid[]) AND status IN {_FINAL} AND finished_at >= $2
    AND process_id IS DISTINCT FROM $3
ORDER BY finished_at
LIMIT $4
"""

# A running turn of this process whose end was never stored. $1 conversation, $2 request.
_INTERRUPT = """
UPDATE chatturns SET status = 'interrupted', finished_at = $3
WHERE session_id = $1 AND request_id = $2 AND status = 'running'
"""

# The statements that refuse a turn breaking the one-turn-at-a-time rule.
_CONFLICTS = {
    "chatturns_one_running": "another turn of the conversation is running",
    "chatturnevents_numbers": "the turn's event numbers are taken by another turn's",
}


@contextmanager
def _refused_as_conflict() -> Iterator[None]:
    """Raise `TurnConflictError` for a statement that broke the rule."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        reason = _CONFLICTS.get(exc.constraint_name or "")
        if reason is None:
            raise
        raise TurnConflictError(
            reason, running=exc.constraint_name == "chatturns_one_running"
        ) from exc


class ChatTurnStore:
    """The database work of chat turns (see the module's text).

    Args:
        sessionmaker: Where connections come from (the server's pool).
        process_id: This server process, written on the turns it runs.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        process_id: uuid.UUID | None = None,
    ) -> None:
        self._engine = bound_engine(sessionmaker)
        self._process_id = process_id

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[TurnStatements]:
        """Check a pooled connection out for the statements of one step of a turn."""
        async with open_driver_connection(self._engine) as driver:
            yield TurnStatements(driver, self._process_id)


class TurnStatements:
    """A turn's statements on one checked-out connection; each commits on its own.

    Those given `TurnWrites` store them in the same statement (see `TurnWrites`).
    """

    __slots__ = ("_driver", "_process_id")

    def __init__(self, driver: Any, process_id: uuid.UUID | None = None) -> None:
        self._driver = driver
        self._process_id = process_id

    async def look_up(
        self,
        session_id: uuid.UUID,
        *,
        owner_id: uuid.UUID,
        llm_name: str,
        provider_name: str | None,
        writes: TurnWrites | None = None,
    ) -> TurnLookup:
        """Find the conversation and the user's model config named by a message.

        Raises:
            TurnConflictError: The writes start a turn while another process's runs,
                or number events behind another's; nothing is stored.
        """
        with _refused_as_conflict():
            return await self._look_up(session_id, owner_id, llm_name, provider_name, writes)

    async def _look_up(
        self,
        session_id: uuid.UUID,
        owner_id: uuid.UUID,
        llm_name: str,
        provider_name: str | None,
        writes: TurnWrites | None,
    ) -> TurnLookup:
        if writes:
            tail = writes.parameters(self._process_id)
            if provider_name is None:
                row = await self._driver.fetchrow(
                    _LOOK_UP_BY_NAME_WRITING, session_id, owner_id, llm_name, *tail
                )
            else:
                row = await self._driver.fetchrow(
                    _LOOK_UP_WRITING, session_id, owner_id, llm_name, provider_name, *tail
                )
        elif provider_name is None:
            row = await self._driver.fetchrow(_LOOK_UP_BY_NAME, session_id, owner_id, llm_name)
        else:
            row = await self._driver.fetchrow(
                _LOOK_UP, session_id, owner_id, llm_name, provider_name
            )
        return _lookup(row)

    async def look_up_and_store(
        self,
        session_id: uuid.UUID,
        *,
        owner_id: uuid.UUID,
        llm_name: str,
        provider_name: str | None,
        content: str,
        request_id: uuid.UUID,
        api_key: str | None,
        writes: TurnWrites | None = None,
    ) -> TurnLookup:
        """Look up as :meth:`look_up` does and, in the same round trip, store the user's
        message if the conversation is the owner's, the config is found and its
        provider's stored key is ``api_key`` (one the caller already knows it can use);
        ``stored`` tells whether it did. Otherwise nothing is stored.

        Raises:
            NotFoundError: The conversation went away under the statement.
            TurnConflictError: As for :meth:`look_up`.
        """
        message = (uuid.uuid4(), request_id, content, utcnow(), api_key)
        tail = (writes or TurnWrites()).parameters(self._process_id)
        try:
            with _refused_as_conflict():
                if provider_name is None:
                    row = await self._driver.fetchrow(
                        _LOOK_UP_BY_NAME_AND_STORE, session_id, owner_id, llm_name, *message, *tail
                    )
                else:
                    row = await self._driver.fetchrow(
                        _LOOK_UP_AND_STORE,
                        session_id,
                        owner_id,
                        llm_name,
                        provider_name,
                        *message,
                        *tail,
                    )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"conversation {session_id} not found") from exc
        return dataclasses.replace(_lookup(row), stored=row["stored"])

    async def create_conversation(
        self,
        session_id: uuid.UUID,
        *,
        owner_id: uuid.UUID,
        title: str,
        writes: TurnWrites | None = None,
    ) -> bool:
        """Create the conversation with the turn's writes; return False if its id is
        taken (by anyone): then nothing is stored."""
        tail = (writes or TurnWrites()).parameters(self._process_id)
        with _refused_as_conflict():
            created = await self._driver.fetchval(
                _CREATE_CONVERSATION, session_id, owner_id, title, utcnow(), *tail
            )
        return created is not None

    async def claim(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, request_id: uuid.UUID
    ) -> bool:
        """Make the owner's turn ``request_id`` the conversation's running one, once the
        turn of another process that held it back has ended. Returns False if the turn
        has ended meanwhile (it was cancelled elsewhere) or the conversation is not the
        owner's any more.

        Raises:
            TurnConflictError: Another turn of the conversation still runs.
        """
        with _refused_as_conflict():
            claimed = await self._driver.fetchval(
                _CLAIM, session_id, owner_id, request_id, utcnow(), self._process_id
            )
        return claimed is not None

    async def running(self, session_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID | None] | None:
        """Return the conversation's running turn and its process, if one runs."""
        row = await self._driver.fetchrow(_RUNNING, session_id)
        return None if row is None else (row["request_id"], row["process_id"])

    async def interrupt(self, session_id: uuid.UUID, *, request_id: uuid.UUID) -> None:
        """End a running turn as ``interrupted`` (one this process left running)."""
        await self._driver.execute(_INTERRUPT, session_id, request_id, utcnow())

    async def ended_since(
        self,
        session_ids: list[uuid.UUID],
        *,
        since: datetime,
        process_id: uuid.UUID | None,
        limit: int,
    ) -> list[tuple[uuid.UUID | None, uuid.UUID, uuid.UUID, uuid.UUID]]:
        """The turns of these conversations that another process than ``process_id``
        finished at ``since`` or later, oldest first, at most ``limit``: ``(process, user,
        session, request)``, as their ``genai_turns`` notices say."""
        rows = await self._driver.fetch(_ENDED_SINCE, session_ids, since, process_id, limit)
        return [
            (row["process_id"], row["user_id"], row["session_id"], row["request_id"])
            for row in rows
        ]

    async def notify(self, channel: str, payloads: list[str]) -> None:
        """Send ``payloads`` on ``channel``, one notice each, in one statement."""
        await self._driver.execute(_NOTIFY, channel, payloads)

    async def events_after(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, after_seq: int, limit: int
    ) -> SessionAttachment:
        """Read the conversation's last number and the owner's events after
        ``after_seq`` (at most ``limit``), as :meth:`attach` does, without its replies."""
        rows = await self._driver.fetch(_EVENTS_AFTER, session_id, owner_id, after_seq, limit)
        return _attachment(rows)

    async def add_message(
        self,
        session_id: uuid.UUID,
        *,
        content: str,
        request_id: uuid.UUID,
        sender_type: SenderType = SenderType.USER,
    ) -> None:
        """Store a message of the conversation (whose owner the caller has checked).

        Raises:
            NotFoundError: The conversation does not exist (any more).
        """
        args = (uuid.uuid4(), request_id, sender_type.value, content, utcnow(), session_id)
        try:
            await self._driver.execute(_ADD_MESSAGE, *args)
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"conversation {session_id} not found") from exc

    async def add_reply(
        self,
        session_id: uuid.UUID,
        *,
        content: str,
        request_id: uuid.UUID,
        owner_id: uuid.UUID,
        writes: TurnWrites | None = None,
    ) -> list[File]:
        """Store the master's message with the turn's writes; return the owner's files
        of the request.

        Raises:
            NotFoundError: The conversation does not exist (any more); nothing is stored.
        """
        tail = (writes or TurnWrites()).parameters(self._process_id)
        args = (session_id, owner_id, request_id, uuid.uuid4(), content, utcnow())
        try:
            rows = await self._driver.fetch(_ADD_REPLY, *args, *tail)
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"conversation {session_id} not found") from exc
        return [File(**dict(row)) for row in rows]

    async def last_messages(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, limit: int
    ) -> list[tuple[SenderType, str]]:
        """Return the sender and content of the owner's conversation's last ``limit``
        messages, newest first (the master's history); ``limit`` 0 gives the current
        message alone, its newest user message. Those of `ChatRepository`'s pages, without
        their count; an unknown or foreign conversation has none."""
        rows = await self._driver.fetch(
            _LAST_MESSAGES, session_id, owner_id, max(limit, 1), limit == 0
        )
        return [(SenderType(row["sender_type"]), row["content"]) for row in rows]

    async def files_of_request(
        self,
        request_id: uuid.UUID,
        *,
        owner_id: uuid.UUID,
        session_id: uuid.UUID,
        writes: TurnWrites | None = None,
    ) -> list[File]:
        """Return the owner's files of one request (for a turn that stored no message),
        storing the turn's writes on the way."""
        tail = (writes or TurnWrites()).parameters(self._process_id)
        try:
            rows = await self._driver.fetch(
                _FILES_OF_REQUEST, session_id, owner_id, request_id, *tail
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"conversation {session_id} not found") from exc
        return [File(**dict(row)) for row in rows]

    async def store_writes(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, writes: TurnWrites
    ) -> None:
        """Store turn writes alone (nothing if the conversation is not the user's).

        Raises:
            NotFoundError: The conversation went away under the statement.
            TurnConflictError: The writes would start a turn while another runs.
        """
        try:
            with _refused_as_conflict():
                await self._driver.execute(
                    _STORE_WRITES, session_id, owner_id, *writes.parameters(self._process_id)
                )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"conversation {session_id} not found") from exc

    async def reply_of(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, request_id: uuid.UUID
    ) -> str | None:
        """Return the reply frame (JSON text) of the owner's finished turn, and count it
        as delivered; None if the turn has no final event (yet)."""
        reply: str | None = await self._driver.fetchval(_REPLY_OF, session_id, owner_id, request_id)
        return reply

    async def attach(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, after_seq: int | None, limit: int
    ) -> SessionAttachment:
        """Read what a socket joining the conversation needs (see `SessionAttachment`);
        ``after_seq`` None asks for no events. At most ``limit`` events."""
        rows = await self._driver.fetch(
            _ATTACH,
            session_id,
            owner_id,
            -1 if after_seq is None else after_seq,
            0 if after_seq is None else limit,
        )
        return _attachment(rows)


def _attachment(rows: Any) -> SessionAttachment:
    last_seq = 0
    events: list[tuple[int, uuid.UUID, str, str, datetime]] = []
    undelivered: list[tuple[uuid.UUID, str]] = []
    for row in rows:
        part = row["part"]
        if part == 0:
            last_seq = row["seq"]
        elif part == 1:
            events.append(
                (row["seq"], row["request_id"], row["kind"], row["data"], row["created_at"])
            )
        elif row["data"] is not None:
            undelivered.append((row["request_id"], row["data"]))
    return SessionAttachment(last_seq, events, undelivered)


_LAST_MESSAGES = """
SELECT m.sender_type::text AS sender_type, m.content
FROM chatmessages m JOIN chatconversations c ON c.session_id = m.conversation_id
WHERE m.conversation_id = $1 AND c.creator_id = $2 AND (NOT $4 OR m.sender_type = 'user')
ORDER BY m.created_at DESC, m.id DESC
LIMIT $3
"""


def _lookup(row: Any) -> TurnLookup:
    choice = None
    if row["name"] is not None and row["provider_name"] is not None:
        choice = ModelChoice(
            provider_name=row["provider_name"],
            api_key=row["api_key"],
            provider_metadata=row["provider_metadata"] or {},
            name=row["name"],
            model=row["model"],
            temperature=row["temperature"],
            system_prompt=row["system_prompt"],
            user_prompt=row["user_prompt"],
            max_last_messages=row["max_last_messages"],
            credentials=row["credentials"] or {},
        )
    return TurnLookup(
        conversation_exists=row["conversation_exists"],
        conversation_owner=row["owner"],
        choice=choice,
        provider_exists=row["provider_exists"],
    )
