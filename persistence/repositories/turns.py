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
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg

from .._db import bound_engine, open_driver_connection
from .._exceptions import NotFoundError
from .._models import File, SenderType, utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["ChatTurnStore", "ModelChoice", "TurnLookup", "TurnStatements"]


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


def _looked_up_and_stored(look_up: str, first: int) -> str:
    """``look_up``, storing the user's message in the same statement when the owner's
    conversation and config are found and the provider's key is the one given.

    Its parameters follow the look-up's, from ``$first``: message id, request id,
    content, time, expected key.
    """
    n = [f"${first + i}" for i in range(5)]
    return f"""
WITH found AS ({look_up}),
stored AS (
    INSERT INTO chatmessages
        (id, request_id, sender_type, content, created_at, updated_at, conversation_id)
    SELECT {n[0]}, {n[1]}, 'user'::sendertype, {n[2]}, {n[3]}, {n[3]}, $1 FROM found
    WHERE found.owner = $2 AND found.name IS NOT NULL AND found.provider_name IS NOT NULL
        AND found.api_key IS NOT DISTINCT FROM {n[4]}::text
    RETURNING id
)
SELECT found.*, EXISTS (SELECT FROM stored) AS stored FROM found
"""


_LOOK_UP_AND_STORE = _looked_up_and_stored(_LOOK_UP, 5)
_LOOK_UP_BY_NAME_AND_STORE = _looked_up_and_stored(_LOOK_UP_BY_NAME, 4)

_CREATE_CONVERSATION = """
INSERT INTO chatconversations (session_id, title, creator_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $4)
ON CONFLICT (session_id) DO NOTHING
RETURNING session_id
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

_FILES_OF_REQUEST = f"""
SELECT {_FILE_COLUMNS} FROM files WHERE request_id = $1 AND creator_id = $2 ORDER BY id
"""

# The reply, and the request's files as they are once it is stored (agents upload them
# during the turn), in one statement.
_ADD_REPLY = f"""
WITH reply AS ({_ADD_MESSAGE} RETURNING id)
SELECT {_FILE_COLUMNS} FROM files WHERE request_id = $2 AND creator_id = $7 ORDER BY id
"""


class ChatTurnStore:
    """The database work of chat turns (see the module's text).

    Args:
        sessionmaker: Where connections come from (the server's pool).
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._engine = bound_engine(sessionmaker)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[TurnStatements]:
        """Check a pooled connection out for the statements of one step of a turn."""
        async with open_driver_connection(self._engine) as driver:
            yield TurnStatements(driver)


class TurnStatements:
    """A turn's statements on one checked-out connection; each commits on its own."""

    __slots__ = ("_driver",)

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def look_up(
        self,
        session_id: uuid.UUID,
        *,
        owner_id: uuid.UUID,
        llm_name: str,
        provider_name: str | None,
    ) -> TurnLookup:
        """Find the conversation and the user's model config named by a message."""
        if provider_name is None:
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
    ) -> TurnLookup:
        """Look up as :meth:`look_up` does and, in the same round trip, store the user's
        message if the conversation is the owner's, the config is found and its
        provider's stored key is ``api_key`` (one the caller already knows it can use);
        ``stored`` tells whether it did. Otherwise nothing is stored.

        Raises:
            NotFoundError: The conversation went away under the statement.
        """
        message = (uuid.uuid4(), request_id, content, utcnow(), api_key)
        try:
            if provider_name is None:
                row = await self._driver.fetchrow(
                    _LOOK_UP_BY_NAME_AND_STORE, session_id, owner_id, llm_name, *message
                )
            else:
                row = await self._driver.fetchrow(
                    _LOOK_UP_AND_STORE, session_id, owner_id, llm_name, provider_name, *message
                )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFoundError(f"conversation {session_id} not found") from exc
        return dataclasses.replace(_lookup(row), stored=row["stored"])

    async def create_conversation(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, title: str
    ) -> bool:
        """Create the conversation; return False if its id is taken (by anyone)."""
        created = await self._driver.fetchval(
            _CREATE_CONVERSATION, session_id, title, owner_id, utcnow()
        )
        return created is not None

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
        self, session_id: uuid.UUID, *, content: str, request_id: uuid.UUID, owner_id: uuid.UUID
    ) -> list[File]:
        """Store the master's message and return the owner's files of the request.

        Raises:
            NotFoundError: The conversation does not exist (any more); nothing is stored.
        """
        args = (
            uuid.uuid4(),
            request_id,
            SenderType.MASTER_AGENT.value,
            content,
            utcnow(),
            session_id,
            owner_id,
        )
        try:
            rows = await self._driver.fetch(_ADD_REPLY, *args)
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

    async def files_of_request(self, request_id: uuid.UUID, *, owner_id: uuid.UUID) -> list[File]:
        """Return the owner's files of one request (for a turn that stored no message)."""
        rows = await self._driver.fetch(_FILES_OF_REQUEST, request_id, owner_id)
        return [File(**dict(row)) for row in rows]


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
