"""The registry's database work on agents: registration, disconnect, flow state; and
what a failure of that work means (an outage to wait out, or a refusal).

Every function takes the ``AsyncSession`` of one transaction that the caller owns.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import cast, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from persistence import (
    Agent,
    AgentFlow,
    AgentRepository,
    AlreadyExistsError,
    FlowRepository,
    PersistenceError,
    is_database_unavailable,
)
from persistence.repositories import flow_item_ids

from ._rules import MAX_NAME_LENGTH, AgentClaims, new_alias, next_alias, normalise_name

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "activate_agent",
    "deactivate_agent",
    "is_outage",
    "is_refusal",
    "recheck_flows",
]

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


# SQLSTATE classes that mean "the server cannot serve us now", not "this row is wrong":
# connection exceptions, insufficient resources, operator intervention (shutdown,
# cannot connect now), system errors.
_UNAVAILABLE_CLASSES = frozenset({"08", "53", "57", "58"})


def is_outage(error: BaseException) -> bool:
    """Tell whether ``error`` means the database cannot be reached, rather than a bug
    or a row the database refuses.

    An outage is waited out: the work is tried again once the database answers.
    Beyond `persistence.is_database_unavailable` (refused or lost connections, a pool
    that cannot connect in time) this counts any socket error or timeout, and any
    error the server sends while we connect (no statement was sent yet: the database
    is gone, renamed, closed to connections or full).
    """
    if is_database_unavailable(error) or isinstance(error, OSError | TimeoutError):
        return True
    if isinstance(error, DBAPIError):
        if error.statement is None:
            return True
        sqlstate = getattr(error.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_CLASSES
    return False


def is_refusal(error: BaseException) -> bool:
    """Tell whether the database refused the work itself (a poison row: bad data, a
    broken constraint), as opposed to an outage (`is_outage`) or a bug of ours."""
    return isinstance(error, SQLAlchemyError | PersistenceError)
