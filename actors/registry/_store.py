"""The registry's database work on agents: registration, disconnect, flow state; and
what a failure of that work means (an outage to wait out, or a refusal).

Every function takes the ``AsyncSession`` of one transaction that the caller owns.
Agent events come in batches (`activate_agents`, `deactivate_agents`): a few statements
whatever the batch's size, since one statement per agent held 1,000 reconnecting agents
inactive for seconds. `activate_agent` is the same work for one agent, with retries of
a taken alias; the registry falls back to it when the database refuses a batch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import Uuid, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from persistence import (
    Agent,
    AgentRepository,
    AlreadyExistsError,
    FlowRepository,
    PersistenceError,
    is_database_unavailable,
)
from persistence.repositories import flow_item_ids
from persistence.repositories.agents import AgentActivation

from ._rules import MAX_NAME_LENGTH, AgentClaims, new_alias, next_alias, normalise_name

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "Registration",
    "activate_agent",
    "activate_agents",
    "deactivate_agent",
    "deactivate_agents",
    "is_outage",
    "is_refusal",
    "recheck_flows",
]

logger = logging.getLogger(__name__)

_ALIAS_ATTEMPTS = 5


@dataclasses.dataclass(frozen=True, slots=True)
class Registration:
    """One registration to store: the claims of its valid JWT and what the agent sent."""

    claims: AgentClaims
    name: str
    description: str
    input_schema: Any


async def activate_agents(
    session: AsyncSession, registrations: Sequence[Registration]
) -> set[uuid.UUID]:
    """Store many registrations, mark those agents active and re-check their flows.

    Three to five statements whatever the count: one checks every ``(sub, user_id)``
    row (API.md §9.4), one writes every found row, the rest re-check the flows. Each
    agent appears at most once. Names and aliases follow `activate_agent`'s rules.

    Returns:
        The ids of the agents found and activated; the others have no such row.

    Raises:
        sqlalchemy.exc.IntegrityError: a new alias is taken (nothing of the batch is
            kept once the caller's transaction rolls back; `activate_agent` retries).
    """
    repo = AgentRepository(session)
    aliases = await repo.registered_aliases(
        [(r.claims.agent_id, r.claims.user_id) for r in registrations]
    )
    rows: list[AgentActivation] = []
    for reg in registrations:
        current = aliases.get(reg.claims.agent_id)
        if current is None:
            continue
        normalised = normalise_name(reg.name)
        name: str | None = normalised
        alias: str | None = None
        if len(normalised) > MAX_NAME_LENGTH:
            logger.warning(
                "agent %s registered a name of %d characters; keeping its name",
                reg.claims.agent_id,
                len(normalised),
            )
            name = None
        else:
            alias = next_alias(current, normalised)
        params = reg.input_schema if reg.input_schema is not None else {}
        rows.append(
            AgentActivation(reg.claims.agent_id, name, alias, reg.description, json.dumps(params))
        )
    await repo.activate_many(rows)
    await recheck_flows(session, [row.id for row in rows])
    return set(aliases)


async def deactivate_agents(
    session: AsyncSession, agent_ids: Collection[uuid.UUID]
) -> list[uuid.UUID]:
    """Apply `deactivate_agent` to many agents in two statements; return the known ones."""
    known = await AgentRepository(session).deactivate_many(agent_ids)
    await FlowRepository(session).deactivate_containing_many(known)
    return [agent_id for agent_id, _ in known]


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


async def recheck_flows(session: AsyncSession, agent_ids: Collection[uuid.UUID]) -> int:
    """Set each flow listing any of the agents active iff all its genai items are active
    agents; three statements at most whatever the count.

    Upstream re-evaluates every flow of every user after each registration (API.md
    §13.8); only the flows that list a registered agent can change then, so only they
    are read. Returns how many flows changed.
    """
    if not agent_ids:
        return 0
    flows = await FlowRepository(session).containing_any(agent_ids)
    if not flows:
        return 0
    members: dict[uuid.UUID, list[str]] = {
        flow_id: [i for i, t in flow_item_ids(items) if t == "genai"] for flow_id, items, _ in flows
    }
    wanted = [u for u in {_uuid(i) for ids in members.values() for i in ids} if u is not None]
    ids = bindparam("ids", wanted, type_=ARRAY(Uuid()))
    active = {
        str(a)
        for a in await session.scalars(
            select(Agent.id).where(Agent.id == any_(ids), Agent.is_active.is_(True))
        )
    }
    changes: list[tuple[uuid.UUID, bool]] = []
    for flow_id, _, is_active in flows:
        should = bool(members[flow_id]) and all(_canonical(i) in active for i in members[flow_id])
        if is_active != should:
            changes.append((flow_id, should))
    return await FlowRepository(session).set_active_many(changes)


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
