"""Agent logs: batched inserts and owner-scoped reads."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, String, case, cast, func, insert, select
from sqlalchemy.orm import aliased

from .._models import Agent, ChatConversation, Log, utcnow
from ._base import Repository

__all__ = ["LogEntry", "LogRepository", "NewLog"]


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

    async def add_many(self, logs: Iterable[NewLog]) -> int:
        """Insert the logs in one multi-row statement per page; return how many."""
        now = utcnow()
        rows = [
            {
                "session_id": log.session_id,
                "request_id": log.request_id,
                "agent_id": log.agent_id,
                "creator_id": log.creator_id,
                "message": log.message,
                "log_level": log.log_level,
                "created_at": log.created_at or now,
                "updated_at": log.created_at or now,
            }
            for log in logs
        ]
        if rows:
            await self.session.execute(insert(Log), rows)
        return len(rows)

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

    async def owner_of_session(self, session_id: uuid.UUID) -> uuid.UUID | None:
        """Return the creator of the session's conversation, or None."""
        return await self.session.scalar(
            select(ChatConversation.creator_id).where(ChatConversation.session_id == session_id)
        )
