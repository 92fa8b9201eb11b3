"""Agent flows (the ``agentworkflows`` table) and their eligibility rule."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import cast, literal, or_, select, text, update
from sqlalchemy.dialects.postgresql import JSONB

from .._exceptions import NotFoundError
from .._models import AgentFlow, utcnow
from ._base import Repository, apply_changes
from .agents import ROW_VERSION

__all__ = [
    "FlowListing",
    "FlowListings",
    "FlowRepository",
    "FlowVersions",
    "flow_item_ids",
    "is_eligible",
    "item_key",
    "items_eligible",
]

_PATCHABLE = ("name", "alias", "description", "flow", "is_active")


def flow_item_ids(flow: Any) -> list[tuple[str, str]]:
    """Return the ``(id, type)`` of each item, reading the first release's form too.

    Ids are lowercased, as ``str(UUID)`` writes them.
    """
    items: list[tuple[str, str]] = []
    if not isinstance(flow, list):
        return items
    for item in flow:
        if isinstance(item, dict):
            item_id = item.get("id", item.get("agent_id"))
            items.append((str(item_id).lower(), str(item.get("type", "genai"))))
    return items


def item_key(item_id: str, kind: str) -> str:
    """Name a flow item in a set of valid items: an agent by its id, a tool or card typed
    (``mcp:<tool id>``, ``a2a:<card id>``)."""
    return item_id if kind == "genai" else f"{kind}:{item_id}"


def is_eligible(flow: AgentFlow, valid_items: AbstractSet[str]) -> bool:
    """Whether every item of *flow* is in *valid_items* (as :func:`item_key` names them):
    the owner's active agents, tools of the owner's active MCP servers, the owner's
    active A2A cards.

    The ids are text, as :func:`flow_item_ids` reads them (``str(uuid)``), so callers
    convert the set once for all their flows.
    """
    return items_eligible(flow_item_ids(flow.flow), valid_items)


def items_eligible(items: Sequence[tuple[str, str]], valid_items: AbstractSet[str]) -> bool:
    """Apply :func:`is_eligible` to a flow's :func:`flow_item_ids`."""
    return bool(items) and all(item_key(i, t) in valid_items for i, t in items)


class FlowListing(NamedTuple):
    """A flow as lists show it; ``version`` names this content of the row.

    ``flow_json`` is the stored JSON text of the items, undecoded.
    """

    version: str
    id: uuid.UUID
    name: str
    description: str
    flow_json: str
    created_at: datetime
    updated_at: datetime


class FlowVersions(NamedTuple):
    """The versions of a page of flows, and the owner's valid flow items at that instant
    (:func:`item_key`)."""

    versions: list[str]
    active_agent_ids: list[str]


# Items name an agent as {"id": ...} or, in the first release's form, {"agent_id": ...}.
_LISTS_ANY = """
    (CAST(f.flow AS jsonb) @> ANY(ARRAY(
        SELECT jsonb_build_array(jsonb_build_object(k, x))
          FROM unnest(CAST(:agents AS text[])) AS x, unnest(ARRAY['id', 'agent_id']) AS k)))
"""
_CONTAINING_ANY = text(f"SELECT f.id, f.flow, f.is_active FROM agentworkflows f WHERE {_LISTS_ANY}")
_DEACTIVATE_CONTAINING_MANY = text(
    """
    UPDATE agentworkflows f SET is_active = false, updated_at = :now
      FROM unnest(CAST(:agents AS text[]), CAST(:owners AS uuid[])) AS r(agent, owner)
     WHERE f.is_active AND (r.owner IS NULL OR f.creator_id = r.owner)
       AND (CAST(f.flow AS jsonb) @> jsonb_build_array(jsonb_build_object('id', r.agent))
            OR CAST(f.flow AS jsonb) @> jsonb_build_array(jsonb_build_object('agent_id', r.agent)))
    """
)
_SET_ACTIVE_MANY = text(
    """
    UPDATE agentworkflows f SET is_active = r.active, updated_at = :now
      FROM unnest(CAST(:ids AS uuid[]), CAST(:actives AS boolean[])) AS r(id, active)
     WHERE f.id = r.id AND f.is_active IS DISTINCT FROM r.active
    """
)

_PAGE = (
    "FROM agentworkflows WHERE creator_id = $1 ORDER BY created_at DESC, id DESC OFFSET $2 LIMIT $3"
)
_LIST_SQL = f"""
SELECT {ROW_VERSION}, id, name, description, flow::text, created_at, updated_at {_PAGE}
"""
_VERSIONS_SQL = f"""
SELECT ARRAY(SELECT {ROW_VERSION} {_PAGE}),
       ARRAY(SELECT id::text FROM agents WHERE creator_id = $1 AND is_active
             UNION ALL
             SELECT 'mcp:' || t.id::text FROM mcptools t
               JOIN mcpservers s ON s.id = t.mcp_server_id
              WHERE s.creator_id = $1 AND s.is_active
             UNION ALL
             SELECT 'a2a:' || id::text FROM a2acards WHERE creator_id = $1 AND is_active)
"""


class FlowListings:
    """The flow list's statements, run straight on an asyncpg connection.

    Ordered as :meth:`FlowRepository.list_for_user` orders them (see
    :class:`~.agents.AgentListings` for why).
    """

    def __init__(self, driver: Any) -> None:
        self._driver = driver

    async def rows(
        self, owner_id: uuid.UUID, *, offset: int = 0, limit: int = 100
    ) -> list[FlowListing]:
        """List the owner's flows, newest first."""
        rows = await self._driver.fetch(_LIST_SQL, owner_id, offset, limit)
        return [FlowListing(*row) for row in rows]

    async def versions(
        self, owner_id: uuid.UUID, *, offset: int = 0, limit: int = 100
    ) -> FlowVersions:
        """Return the ``version`` of each flow :meth:`rows` would list, in order.

        Read in the same statement: the owner's valid flow items (:func:`item_key`),
        which decide whether each flow is active.
        """
        versions, active = await self._driver.fetchrow(_VERSIONS_SQL, owner_id, offset, limit)
        return FlowVersions(versions, active)


class FlowRepository(Repository):
    """Agent flows, scoped to their creator."""

    async def add(
        self,
        *,
        name: str,
        alias: str,
        description: str,
        flow: list[dict[str, Any]],
        creator_id: uuid.UUID,
        is_active: bool = True,
        id: uuid.UUID | None = None,
    ) -> AgentFlow:
        """Add a flow.

        Raises:
            AlreadyExistsError: the alias is taken.
        """
        row = AgentFlow(
            id=id or uuid.uuid4(),
            name=name,
            alias=alias,
            description=description,
            flow=flow,
            creator_id=creator_id,
            is_active=is_active,
        )
        async with self._writing():
            self.session.add(row)
        return row

    async def get(self, flow_id: uuid.UUID, *, owner_id: uuid.UUID) -> AgentFlow | None:
        """Return the owner's flow, or None."""
        return await self.session.scalar(
            select(AgentFlow).where(AgentFlow.id == flow_id, AgentFlow.creator_id == owner_id)
        )

    async def list_for_user(
        self, owner_id: uuid.UUID, *, offset: int = 0, limit: int | None = 100
    ) -> Sequence[AgentFlow]:
        """List the owner's flows, newest first (all of them when ``limit`` is None)."""
        stmt = (
            select(AgentFlow)
            .where(AgentFlow.creator_id == owner_id)
            .order_by(AgentFlow.created_at.desc(), AgentFlow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def patch(self, flow_id: uuid.UUID, *, owner_id: uuid.UUID, **changes: Any) -> AgentFlow:
        """Change fields of the owner's flow.

        Raises:
            NotFoundError: no such flow of this owner.
            AlreadyExistsError: the new alias is taken.
        """
        row = await self.get(flow_id, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"flow {flow_id} not found")
        async with self._writing():
            apply_changes(row, changes, _PATCHABLE)
        return row

    async def delete(self, flow_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
        """Delete the owner's flow.

        Raises:
            NotFoundError: no such flow of this owner.
        """
        row = await self.get(flow_id, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"flow {flow_id} not found")
        await self.session.delete(row)
        await self.session.flush()

    async def deactivate_containing(
        self, agent_id: uuid.UUID, *, owner_id: uuid.UUID | None = None
    ) -> int:
        """Mark inactive every flow (of the owner, if given) listing the agent; return the count.

        Items of the first release's form (``{"agent_id": ...}``) count too.
        """
        contains = or_(
            *(
                cast(AgentFlow.flow, JSONB).contains(
                    cast(literal(json.dumps([{key: str(agent_id)}])), JSONB)
                )
                for key in ("id", "agent_id")
            )
        )
        stmt = update(AgentFlow).where(contains, AgentFlow.is_active.is_(True))
        if owner_id is not None:
            stmt = stmt.where(AgentFlow.creator_id == owner_id)
        result = await self.session.execute(
            stmt.values(is_active=False),
            execution_options={"synchronize_session": "fetch"},
        )
        return int(getattr(result, "rowcount", 0))

    async def containing_any(
        self, agent_ids: Collection[uuid.UUID]
    ) -> list[tuple[uuid.UUID, Any, bool]]:
        """Return ``(id, flow items, is_active)`` of every flow (of any owner) listing any
        of the agents, in one statement."""
        if not agent_ids:
            return []
        rows = await self.session.execute(_CONTAINING_ANY, {"agents": [str(a) for a in agent_ids]})
        return [(row[0], row[1], row[2]) for row in rows]

    async def deactivate_containing_many(
        self, agents: Sequence[tuple[uuid.UUID, uuid.UUID | None]]
    ) -> int:
        """Apply :meth:`deactivate_containing` to many ``(agent id, owner id)`` at once,
        in one statement; return how many flows turned inactive."""
        if not agents:
            return 0
        result = await self.session.execute(
            _DEACTIVATE_CONTAINING_MANY,
            {
                "agents": [str(a) for a, _ in agents],
                "owners": [o for _, o in agents],
                "now": utcnow(),
            },
        )
        return int(getattr(result, "rowcount", 0))

    async def set_active_many(self, states: Sequence[tuple[uuid.UUID, bool]]) -> int:
        """Set ``is_active`` of many flows (any owner) in one statement; return how many
        changed."""
        if not states:
            return 0
        result = await self.session.execute(
            _SET_ACTIVE_MANY,
            {"ids": [i for i, _ in states], "actives": [a for _, a in states], "now": utcnow()},
        )
        return int(getattr(result, "rowcount", 0))
