"""Chat turn rows written with SQL, as the chat actor writes them (for the turn tests)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import text

from persistence import utcnow

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    Sessions = async_sessionmaker[AsyncSession]

__all__ = ["add_conversation", "add_event", "add_turn", "add_user", "count"]


async def add_user(sessionmaker: Sessions) -> uuid.UUID:
    """Add a user; return its id."""
    user_id = uuid.uuid4()
    async with sessionmaker.begin() as session:
        await session.execute(
            text("INSERT INTO users (id, username, password) VALUES (:id, :name, 'x')"),
            {"id": user_id, "name": f"u{user_id.hex[:12]}"},
        )
    return user_id


async def add_conversation(sessionmaker: Sessions, owner_id: uuid.UUID) -> uuid.UUID:
    """Add a conversation of ``owner_id``; return its session id."""
    session_id = uuid.uuid4()
    now = utcnow()
    async with sessionmaker.begin() as session:
        await session.execute(
            text(
                "INSERT INTO chatconversations (session_id, title, creator_id, created_at,"
                " updated_at) VALUES (:id, 'chat', :owner, :now, :now)"
            ),
            {"id": session_id, "owner": owner_id, "now": now},
        )
    return session_id


async def add_turn(
    sessionmaker: Sessions,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    status: str,
    *,
    created_at: datetime | None = None,
    finished_at: datetime | None = None,
    process_id: uuid.UUID | None = None,
    delivered: bool = False,
) -> uuid.UUID:
    """Add a turn; a final one without ``finished_at`` finished when it was created."""
    request_id = uuid.uuid4()
    created = created_at or utcnow()
    if finished_at is None and status not in {"queued", "running"}:
        finished_at = created
    async with sessionmaker.begin() as session:
        await session.execute(
            text(
                "INSERT INTO chatturns (request_id, session_id, user_id, status, created_at,"
                " started_at, finished_at, delivered, process_id) VALUES (:r, :s, :u, :status,"
                " :created, :started, :finished, :delivered, :process)"
            ),
            {
                "r": request_id,
                "s": session_id,
                "u": user_id,
                "status": status,
                "created": created,
                "started": None if status == "queued" else created,
                "finished": finished_at,
                "delivered": delivered,
                "process": process_id,
            },
        )
    return request_id


async def add_event(
    sessionmaker: Sessions,
    session_id: uuid.UUID,
    request_id: uuid.UUID,
    user_id: uuid.UUID,
    kind: str,
    data: dict[str, Any] | None = None,
    *,
    created_at: datetime | None = None,
) -> int:
    """Add the conversation's next event; return its number."""
    async with sessionmaker.begin() as session:
        seq = await session.scalar(
            text(
                "INSERT INTO chatturnevents (session_id, seq, request_id, user_id, kind, data,"
                " created_at) SELECT :s, coalesce(max(seq), 0) + 1, :r, :u, :kind,"
                " CAST(:data AS jsonb), :at FROM chatturnevents WHERE session_id = :s"
                " RETURNING seq"
            ),
            {
                "s": session_id,
                "r": request_id,
                "u": user_id,
                "kind": kind,
                "data": json.dumps(data or {}),
                "at": created_at or utcnow(),
            },
        )
    return int(seq)


async def count(sessionmaker: Sessions, sql: str, **params: Any) -> int:
    """Return the integer a ``SELECT count(*) ...`` gives."""
    async with sessionmaker() as session:
        return int(await session.scalar(text(sql), params))
