"""Agents (the ``agents`` table)."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from sqlalchemy import Select, select, text, update

from .._db import driver_connection
from .._exceptions import NotFoundError
from .._models import Agent, utcnow
from ._base import Repository, apply_changes

if TYPE_CHECKING:
    pass

__all__ = [
    "ROW_VERSION",
    "AgentActivation",
    "AgentListing",
    "AgentListings",
    "AgentRepository",
]

SelectT = TypeVar("SelectT", bound=Select[Any])

_PATCHABLE = ("name", "alias", "description", "input_parameters", "jwt", "is_active")


class AgentListing(NamedTuple):
    """An agent as lists show it: every column but its creator and last invocation.

    ``version`` names this exact content of the row (see :data:`ROW_VERSION`), and
    ``input_parameters_json`` is the stored JSON text, undecoded.
    """

    version: str
    id: uuid.UUID
    name: str
    alias: str
    description: str
    input_parameters_json: str
    jwt: str
    is_active: bool
    created_at: datetime
    updated_at: datetime


class AgentActivation(NamedTuple):
    """What one registration writes on its agent's row (:meth:`AgentRepository.activate_many`).

    ``name`` and ``alias`` None keep the stored ones; ``input_parameters_json`` is JSON text.
    """

    id: uuid.UUID
    name: str | None
    alias: str | None
    description: str
    input_parameters_json: str


# A registration batch: every row checked in one statement, every row written in one.
_REGISTERED_ALIASES = text(
    """
    SELECT a.id, a.alias FROM agents a
    JOIN unnest(CAST(:ids AS uuid[]), CAST(:owners AS uuid[])) AS r(id, owner)
      ON a.id = r.id AND a.creator_id = r.owner
    """
)
_ACTIVATE_MANY = text(
    """
    UPDATE agents a
       SET name = coalesce(r.name, a.name), alias = coalesce(r.alias, a.alias),
           description = r.description, input_parameters = CAST(r.params AS json),
           is_active = true, updated_at = :now
      FROM unnest(CAST(:ids AS uuid[]), CAST(:names AS text[]), CAST(:aliases AS text[]),
                  CAST(:descriptions AS text[]), CAST(:params AS text[]))
           AS r(id, name, alias, description, params)
     WHERE a.id = r.id
    """
)
# Only rows that change are written: a write notifies the list caches.
_DEACTIVATE_MANY = text(
    """
    WITH known AS (
        SELECT id, creator_id, is_active FROM agents WHERE id = ANY(CAST(:ids AS uuid[]))
    ), changed AS (
        UPDATE agents a SET is_active = false, updated_at = :now
          FROM known k WHERE a.id = k.id AND k.is_active
    )
    SELECT id, creator_id FROM known
    """
)


ROW_VERSION = "id::text || ':' || xmin::text || ':' || updated_at::text"
"""SQL naming one committed content of a row of the table queried.

Every write gives the row a new ``xmin`` (the writing transaction's id) and readers only
ever see committed rows; ``updated_at`` guards against that 32-bit id wrapping around.
So whatever was rendered from a row can be reused for as long as its version is the
same, by any number of server processes.
"""

_LIST_COLUMNS = f"""
SELECT {ROW_VERSION}, id, name, alias, description, input_parameters::text, jwt,
       is_active, created_at, updated_at
"""
_OLDEST_FIRST = "created_at, id"
_NEWEST_FIRST = "created_at DESC, id DESC"


class AgentListings:
    """The agent list's statements, run straight on an asyncpg connection.

    No ORM rows, no statement compilation or result processing, and asyncpg keeps the
    statements prepared. :class:`AgentRepository` lists through it too.
    """

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def rows(
        self,
        owner_id: uuid.UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[AgentListing]:
        """List the owner's agents (see :meth:`AgentRepository.list_for_user`)."""
        page, args = _listing_page(owner_id, name, description, offset, limit)
        rows = await self._driver.fetch(_LIST_COLUMNS + page, *args)
        return [AgentListing(*row) for row in rows]

    async def versions(
        self,
        owner_id: uuid.UUID,
        *,
        name: str | None = None,
        description: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> list[str]:
        """Return the ``version`` of each agent :meth:`rows` would list, in order.

        One row of one text array: far cheaper to read than the agents themselves.
        """
        page, args = _listing_page(owner_id, name, description, offset, limit)
        versions: list[str] = await self._driver.fetchval(
            f"SELECT ARRAY(SELECT {ROW_VERSION} {page})", *args
        )
        return versions


def _listing_page(
    owner_id: uuid.UUID,
    name: str | None,
    description: str | None,
    offset: int,
    limit: int,
) -> tuple[str, list[Any]]:
    """Build the ``FROM ... LIMIT`` part of a listing and its arguments."""
    args: list[Any] = [owner_id, offset, limit]
    if name is None and description is None:
        where, order = "name <> '' AND description <> ''", _OLDEST_FIRST
    else:
        conditions = []
        if name is not None:
            args.append(name)
            conditions.append(f"name = ${len(args)}")
        if description is not None:
            args.append(_escape_like(description))
            conditions.append(f"description ILIKE '%' || ${len(args)}::text || '%' ESCAPE '/'")
        where, order = " AND ".join(conditions), _NEWEST_FIRST
    page = f"FROM agents WHERE creator_id = $1 AND {where} ORDER BY {order} OFFSET $2 LIMIT $3"
    return page, args


def _escape_like(value: str) -> str:
    # As SQLAlchemy's ``icontains(autoescape=True)`` escapes it, with '/'.
    return value.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _newest_first(stmt: SelectT) -> SelectT:
    return stmt.order_by(Agent.created_at.desc(), Agent.id.desc())


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
        listings = AgentListings(await driver_connection(self.session))
        return await listings.rows(
            owner_id, name=name, description=description, offset=offset, limit=limit
        )

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

    async def registered_aliases(
        self, claims: Sequence[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[uuid.UUID, str]:
        """Check many ``(agent id, owner id)`` claims at once, in one statement.

        Returns:
            The current alias of each agent that exists with that owner; a claim with
            no such row is absent.
        """
        if not claims:
            return {}
        rows = await self.session.execute(
            _REGISTERED_ALIASES,
            {"ids": [c[0] for c in claims], "owners": [c[1] for c in claims]},
        )
        return {row[0]: row[1] for row in rows}

    async def activate_many(self, activations: Sequence[AgentActivation]) -> None:
        """Write many registrations and mark those agents active, in one statement.

        Each agent appears at most once. ORM objects of these rows in this session are
        not refreshed.

        Raises:
            sqlalchemy.exc.IntegrityError: an alias is taken (the whole statement fails).
        """
        if not activations:
            return
        await self.session.execute(
            _ACTIVATE_MANY,
            {
                "ids": [a.id for a in activations],
                "names": [a.name for a in activations],
                "aliases": [a.alias for a in activations],
                "descriptions": [a.description for a in activations],
                "params": [a.input_parameters_json for a in activations],
                "now": utcnow(),
            },
        )

    async def deactivate_many(
        self, agent_ids: Collection[uuid.UUID]
    ) -> list[tuple[uuid.UUID, uuid.UUID | None]]:
        """Mark many agents (whoever owns them) inactive, in one statement.

        Returns:
            The ``(agent id, creator id)`` of each agent that exists.
        """
        if not agent_ids:
            return []
        rows = await self.session.execute(
            _DEACTIVATE_MANY, {"ids": list(agent_ids), "now": utcnow()}
        )
        return [(row[0], row[1]) for row in rows]
