"""Agents (the ``agents`` table)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, String, func, literal_column, select, update

from .._exceptions import NotFoundError
from .._models import Agent
from ._base import Repository, apply_changes

__all__ = ["AgentListing", "AgentRepository"]

SelectT = TypeVar("SelectT", bound=Select[Any])

_PATCHABLE = ("name", "alias", "description", "input_parameters", "jwt", "is_active")


@dataclass(frozen=True, slots=True)
class AgentListing:
    """An agent as lists show it: every column but its creator and last invocation."""

    id: uuid.UUID
    name: str
    alias: str
    description: str
    input_parameters: Any
    jwt: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


# Lists read plain columns: no identity map or change tracking for rows only shown.
_LISTING = select(
    Agent.id,
    Agent.name,
    Agent.alias,
    Agent.description,
    Agent.input_parameters,
    Agent.jwt,
    Agent.is_active,
    Agent.created_at,
    Agent.updated_at,
)


def _newest_first(stmt: SelectT) -> SelectT:
    return stmt.order_by(Agent.created_at.desc(), Agent.id.desc())


# The list body as PostgreSQL renders it, over the rows ``a`` of a listing (``n`` is each
# row's place in it): the agent DTO of the web API, key for key. ``agent_schema`` is
# ``input_parameters`` with ``function.name`` set to the agent's name when ``function`` is
# an object; members keep their stored order (``name`` is appended when missing).
# Timestamps are naive with six fraction digits.
_SCHEMA_FUNCTION = """(
    SELECT json_object_agg(f.key, f.value ORDER BY f.n)
    FROM (
        SELECT key, CASE WHEN key = 'name' THEN to_json(a.name) ELSE value END AS value, n
        FROM json_each(e.value) WITH ORDINALITY AS f(key, value, n)
        UNION ALL
        SELECT 'name', to_json(a.name), 9223372036854775807
        WHERE e.value -> 'name' IS NULL
    ) AS f
)"""
_AGENT_SCHEMA = f"""CASE
    WHEN json_typeof(a.input_parameters) = 'object'
        AND json_typeof(a.input_parameters -> 'function') = 'object'
    THEN (
        SELECT json_object_agg(
            e.key,
            CASE
                WHEN e.key = 'function' AND json_typeof(e.value) = 'object'
                THEN {_SCHEMA_FUNCTION}
                ELSE e.value
            END
            ORDER BY e.n
        )
        FROM json_each(a.input_parameters) WITH ORDINALITY AS e(key, value, n)
    )
    ELSE a.input_parameters
END"""
_AGENT_LIST_BODY = literal_column(
    f"""COALESCE(json_agg(json_build_object(
    'agent_id', a.id,
    'agent_name', a.name,
    'agent_alias', a.alias,
    'agent_description', a.description,
    'agent_schema', {_AGENT_SCHEMA},
    'is_active', a.is_active,
    'agent_jwt', a.jwt,
    'created_at', to_char(a.created_at, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
    'updated_at', to_char(a.updated_at, 'YYYY-MM-DD"T"HH24:MI:SS.US')
) ORDER BY a.n), '[]')::text""",
    String(),
)


def _listing(
    owner_id: uuid.UUID, name: str | None, description: str | None
) -> tuple[Select[Any], tuple[Any, ...]]:
    """The owner's agent list: ``_LISTING`` filtered, and the order to show it in."""
    stmt = _LISTING.where(Agent.creator_id == owner_id)
    if name is None and description is None:
        stmt = stmt.where(Agent.name != "", Agent.description != "")
        return stmt, (Agent.created_at, Agent.id)
    if name is not None:
        stmt = stmt.where(Agent.name == name)
    if description is not None:
        stmt = stmt.where(Agent.description.icontains(description, autoescape=True))
    return stmt, (Agent.created_at.desc(), Agent.id.desc())


class AgentRepository(Repository):
    """Agents, scoped to their creator unless a method says otherwise."""

    async def add(
        self,
        *,
        id: uuid.UUID,
        name: str,
        alias: str,
        description: str,
        jwt: str,
        creator_id: uuid.UUID,
        input_parameters: Any,
        is_active: bool = False,
    ) -> Agent:
        """Add an agent.

        Raises:
            AlreadyExistsError: the id, alias or jwt is taken (see ``constraint``).
        """
        await self._ensure_absent(Agent, id, "agents_pkey")
        agent = Agent(
            id=id,
            name=name,
            alias=alias,
            description=description,
            jwt=jwt,
            creator_id=creator_id,
            input_parameters=input_parameters,
            is_active=is_active,
        )
        async with self._writing():
            self.session.add(agent)
        return agent

    async def get(self, agent_id: uuid.UUID, *, owner_id: uuid.UUID) -> Agent | None:
        """Return the owner's agent, or None."""
        return await self.session.scalar(
            select(Agent).where(Agent.id == agent_id, Agent.creator_id == owner_id)
        )

    async def exists(self, agent_id: uuid.UUID, *, owner_id: uuid.UUID | None = None) -> bool:
        """Tell whether the agent exists (as the owner's, if ``owner_id`` is given)."""
        stmt = select(Agent.id).where(Agent.id == agent_id)
        if owner_id is not None:
            stmt = stmt.where(Agent.creator_id == owner_id)
        return await self.session.scalar(stmt) is not None

    async def get_any_owner(self, agent_id: uuid.UUID) -> Agent | None:
        """Return the agent whoever owns it (router events and id-clash checks only)."""
        return await self.session.get(Agent, agent_id)

    async def list_for_user(
        self,
        owner_id: uuid.UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[AgentListing]:
        """List the owner's agents.

        With ``name`` (exact) and/or ``description`` (case-insensitive substring), newest
        first. Without a filter, only agents whose name and description are both
        non-empty, oldest first.
        """
        stmt, order = _listing(owner_id, name, description)
        rows = await self.session.execute(stmt.order_by(*order).offset(offset).limit(limit))
        return [AgentListing(*row) for row in rows]

    async def list_json_for_user(
        self,
        owner_id: uuid.UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> str:
        """Return :meth:`list_for_user`'s agents as the web API's JSON array of agent DTOs.

        PostgreSQL builds the text; ``function.name`` of each schema is the agent's name.
        """
        stmt, order = _listing(owner_id, name, description)
        rows = (
            stmt.add_columns(func.row_number().over(order_by=order).label("n"))
            .order_by(*order)
            .offset(offset)
            .limit(limit)
            .subquery("a")
        )
        body = await self.session.scalar(select(_AGENT_LIST_BODY).select_from(rows))
        assert body is not None
        return body

    async def list_active_for_user(
        self, owner_id: uuid.UUID, *, offset: int = 0, limit: int | None = 100
    ) -> Sequence[Agent]:
        """List the owner's active agents, newest first (all of them when ``limit`` is None)."""
        stmt = _newest_first(
            select(Agent).where(Agent.creator_id == owner_id, Agent.is_active.is_(True))
        )
        return (await self.session.scalars(stmt.offset(offset).limit(limit))).all()

    async def active_ids(
        self, owner_id: uuid.UUID, agent_ids: Collection[uuid.UUID] | None = None
    ) -> set[uuid.UUID]:
        """Return which of *agent_ids* (all, when None) are active agents of the owner."""
        stmt = select(Agent.id).where(Agent.creator_id == owner_id, Agent.is_active.is_(True))
        if agent_ids is not None:
            if not agent_ids:
                return set()
            stmt = stmt.where(Agent.id.in_(list(agent_ids)))
        return set(await self.session.scalars(stmt))

    async def patch(self, agent_id: uuid.UUID, *, owner_id: uuid.UUID, **changes: Any) -> Agent:
        """Change fields of the owner's agent (name, alias, description, ...).

        Raises:
            NotFoundError: no such agent of this owner.
            AlreadyExistsError: the new alias or jwt is taken.
        """
        agent = await self.get(agent_id, owner_id=owner_id)
        if agent is None:
            raise NotFoundError(f"agent {agent_id} not found")
        async with self._writing():
            apply_changes(agent, changes, _PATCHABLE)
        return agent

    async def delete(self, agent_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
        """Delete the owner's agent.

        Raises:
            NotFoundError: no such agent of this owner.
        """
        agent = await self.get(agent_id, owner_id=owner_id)
        if agent is None:
            raise NotFoundError(f"agent {agent_id} not found")
        await self.session.delete(agent)
        await self.session.flush()

    async def set_active(self, agent_id: uuid.UUID, is_active: bool) -> Agent | None:
        """Mark an agent (whoever owns it) active or inactive; return it, or None."""
        agent = await self.get_any_owner(agent_id)
        if agent is not None:
            agent.is_active = is_active
            await self.session.flush()
        return agent

    async def mark_all_inactive(self) -> int:
        """Mark every agent inactive (at startup); return how many were active."""
        result = await self.session.execute(
            update(Agent).where(Agent.is_active.is_(True)).values(is_active=False),
            execution_options={"synchronize_session": "fetch"},
        )
        return int(getattr(result, "rowcount", 0))
