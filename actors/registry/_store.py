"""The registry's database work: agent state changes and batched log writes.

Every function takes the ``AsyncSession`` of one transaction that the caller owns.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import cast, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB

from persistence import (
    Agent,
    AgentFlow,
    AgentRepository,
    AlreadyExistsError,
    ChatConversation,
    FlowRepository,
    Log,
    LogEntry,
    utcnow,
)
from persistence.repositories import flow_item_ids

from ._rules import MAX_NAME_LENGTH, AgentClaims, ValidLog, new_alias, next_alias, normalise_name

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["OwnerCache", "activate_agent", "deactivate_agent", "recheck_flows", "write_logs"]

logger = logging.getLogger(__name__)

_ALIAS_ATTEMPTS = 5


async def activate_agent(
    session: AsyncSession,
    claims: AgentClaims,
    *,
    name: str,
    description: str,
    input_schema: Any,
) -> Agent | None:
    """Store an agent's registration and mark it active; None if the row does not exist.

    The row must have ``id = sub`` and ``creator_id = user_id`` (API.md §9.4).
    """
    repo = AgentRepository(session)
    agent = await repo.get(claims.agent_id, owner_id=claims.user_id)
    if agent is None:
        return None
    changes: dict[str, Any] = {
        "description": description,
        "input_parameters": input_schema if input_schema is not None else {},
        "is_active": True,
    }
    normalised = normalise_name(name)
    if len(normalised) > MAX_NAME_LENGTH:
        logger.warning(
            "agent %s registered a name of %d characters; keeping %r",
            agent.id,
            len(normalised),
            agent.name,
        )
        alias = None
    else:
        changes["name"] = normalised
        alias = next_alias(agent.alias, normalised)
    for attempt in range(_ALIAS_ATTEMPTS):
        if alias is not None:
            changes["alias"] = alias
        try:
            return await repo.patch(agent.id, owner_id=claims.user_id, **changes)
        except AlreadyExistsError:
            if alias is None or attempt == _ALIAS_ATTEMPTS - 1:
                raise
            alias = new_alias(normalised)
    return None  # pragma: no cover - the loop returns or raises


async def deactivate_agent(session: AsyncSession, agent_id: uuid.UUID) -> bool:
    """Mark the agent and its creator's flows containing it inactive; False if unknown."""
    repo = AgentRepository(session)
    agent = await repo.get_any_owner(agent_id)
    if agent is None:
        return False
    await FlowRepository(session).deactivate_containing(agent_id, owner_id=agent.creator_id)
    await repo.set_active(agent_id, False)
    return True


async def recheck_flows(session: AsyncSession, agent_id: uuid.UUID) -> int:
    """Set each flow listing the agent active iff all its genai items are active agents.

    Upstream re-evaluates every flow of every user after each registration (API.md
    §13.8); only the flows that list the agent can change then, so only they are read.
    Returns how many flows changed.
    """
    contains = cast(AgentFlow.flow, JSONB).contains(
        cast(literal(json.dumps([{"id": str(agent_id)}])), JSONB)
    )
    flows = (await session.scalars(select(AgentFlow).where(contains))).all()
    if not flows:
        return 0
    members: dict[uuid.UUID, list[str]] = {
        flow.id: [i for i, t in flow_item_ids(flow.flow) if t == "genai"] for flow in flows
    }
    wanted = {_uuid(i) for ids in members.values() for i in ids} - {None}
    active = {
        str(a)
        for a in await session.scalars(
            select(Agent.id).where(Agent.id.in_(list(wanted)), Agent.is_active.is_(True))
        )
    }
    changed = 0
    for flow in flows:
        ids = members[flow.id]
        should = bool(ids) and all(_canonical(i) in active for i in ids)
        if flow.is_active != should:
            await session.execute(
                update(AgentFlow).where(AgentFlow.id == flow.id).values(is_active=should)
            )
            changed += 1
    return changed


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _canonical(value: str) -> str:
    parsed = _uuid(value)
    return str(parsed) if parsed is not None else value


class OwnerCache:
    """Who owns a log (ENDPOINTS.md Q20): the conversation's creator, else the agent's.

    Conversation owners and agent creators never change, so found owners are cached
    (bounded). A session without a conversation is re-checked after ``miss_ttl``
    seconds, as its conversation may be created later.
    """

    def __init__(self, *, size: int = 50_000, miss_ttl: float = 2.0) -> None:
        self.size = size
        self.miss_ttl = miss_ttl
        self.sessions: dict[uuid.UUID, uuid.UUID] = {}
        self.session_misses: dict[uuid.UUID, float] = {}
        self.agents: dict[str, uuid.UUID | None] = {}

    def remember_agent(self, agent_id: str, creator_id: uuid.UUID | None) -> None:
        self._bound(self.agents)
        self.agents[agent_id] = creator_id

    async def resolve(
        self, session: AsyncSession, logs: Sequence[ValidLog]
    ) -> dict[tuple[uuid.UUID, str], uuid.UUID | None]:
        """Return the owner of each ``(session_id, agent_id)`` in ``logs``."""
        now = time.monotonic()
        sessions = {log.session_id for log in logs}
        unknown = [
            s
            for s in sessions
            if s not in self.sessions and self.session_misses.get(s, -1e9) + self.miss_ttl < now
        ]
        if unknown:
            rows = await session.execute(
                select(ChatConversation.session_id, ChatConversation.creator_id).where(
                    ChatConversation.session_id.in_(unknown)
                )
            )
            found = {sid: creator for sid, creator in rows.all() if creator is not None}
            self._bound(self.sessions)
            self._bound(self.session_misses)
            for sid in unknown:
                if sid in found:
                    self.sessions[sid] = found[sid]
                    self.session_misses.pop(sid, None)
                else:
                    self.session_misses[sid] = now
        agents = {log.agent_id for log in logs if log.session_id not in self.sessions}
        missing = [a for a in agents if a not in self.agents]
        ids = [u for u in (_uuid(a) for a in missing) if u is not None]
        creators: dict[str, uuid.UUID | None] = {}
        if ids:
            rows = await session.execute(
                select(Agent.id, Agent.creator_id).where(Agent.id.in_(ids))
            )
            creators = {str(agent_id): creator for agent_id, creator in rows.all()}
        for agent_id in missing:
            if agent_id in creators or _uuid(agent_id) is None:
                # Unknown UUIDs are looked up again later; master ids never own anything.
                self.remember_agent(agent_id, creators.get(agent_id))
        return {
            (log.session_id, log.agent_id): self.sessions.get(log.session_id)
            or self.agents.get(log.agent_id, creators.get(log.agent_id))
            for log in logs
        }

    def _bound(self, cache: dict[Any, Any]) -> None:
        if len(cache) >= self.size:
            cache.clear()


async def write_logs(
    session: AsyncSession, logs: Sequence[ValidLog], owners: OwnerCache
) -> list[LogEntry]:
    """Insert ``logs`` in one multi-row statement and return them as stored.

    The rows keep ``creator_id`` NULL, as upstream does: reads derive the owner from
    the conversation and the agent (see `LogRepository`); the returned entries carry
    the owner computed now.
    """
    owner_of = await owners.resolve(session, logs)
    now = utcnow()
    rows = [
        {
            "session_id": log.session_id,
            "request_id": log.request_id,
            "agent_id": log.agent_id,
            "message": log.message,
            "log_level": log.log_level,
            "created_at": now,
            "updated_at": now,
        }
        for log in logs
    ]
    result = await session.execute(
        insert(Log).returning(Log.id, sort_by_parameter_order=True), rows
    )
    ids = list(result.scalars())
    return [
        LogEntry(
            id=log_id,
            session_id=log.session_id,
            request_id=log.request_id,
            agent_id=log.agent_id,
            log_level=log.log_level,
            message=log.message,
            creator_id=owner_of[(log.session_id, log.agent_id)],
            created_at=now,
            updated_at=now,
        )
        for log_id, log in zip(ids, logs, strict=True)
    ]
