"""Users' tool sources: MCP servers with their tools (``mcpservers``, ``mcptools``) and
A2A agents' cards (``a2acards``), and the set of an owner's valid flow items."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, text, update

from .._exceptions import NotFoundError
from .._models import A2ACard, AgentFlow, MCPServer, MCPTool
from ._base import Repository
from .flows import flow_item_ids, items_eligible

__all__ = [
    "A2ARepository",
    "MCPRepository",
    "NewTool",
    "ToolSourceUrls",
    "distinct_urls",
    "reevaluate_tool_flows",
    "valid_item_keys",
]


_VALID_ITEMS_SQL = text(
    """
    SELECT id::text FROM agents WHERE creator_id = :owner AND is_active
    UNION ALL
    SELECT 'mcp:' || t.id::text FROM mcptools t JOIN mcpservers s ON s.id = t.mcp_server_id
     WHERE s.creator_id = :owner AND s.is_active
    UNION ALL
    SELECT 'a2a:' || id::text FROM a2acards WHERE creator_id = :owner AND is_active
    """
)


async def valid_item_keys(session: Any, owner_id: uuid.UUID) -> set[str]:
    """Return the owner's valid flow items (:func:`~.flows.item_key`): active agents, tools of
    active MCP servers, active A2A cards."""
    return set((await session.execute(_VALID_ITEMS_SQL, {"owner": owner_id})).scalars())


@dataclass(frozen=True, slots=True)
class NewTool:
    """A tool to store for a server."""

    name: str
    alias: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ToolSourceUrls:
    """The distinct URLs of every user's MCP servers and A2A cards (for the refresh)."""

    mcp: list[str]
    a2a: list[str]


class MCPRepository(Repository):
    """MCP servers and their tools, scoped to the server's creator."""

    async def get(self, server_id: uuid.UUID, *, owner_id: uuid.UUID) -> MCPServer | None:
        """Return the owner's server, or None."""
        return await self.session.scalar(
            select(MCPServer).where(MCPServer.id == server_id, MCPServer.creator_id == owner_id)
        )

    async def get_by_url(self, url: str, *, owner_id: uuid.UUID) -> MCPServer | None:
        """Return the owner's server at ``url``, or None."""
        return await self.session.scalar(
            select(MCPServer).where(MCPServer.server_url == url, MCPServer.creator_id == owner_id)
        )

    async def tools(self, server_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, list[MCPTool]]:
        """Return the tools of each server, oldest first."""
        found: dict[uuid.UUID, list[MCPTool]] = {server_id: [] for server_id in server_ids}
        if not server_ids:
            return found
        rows = await self.session.scalars(
            select(MCPTool)
            .where(MCPTool.mcp_server_id.in_(list(server_ids)))
            .order_by(MCPTool.created_at, MCPTool.name, MCPTool.id)
        )
        for tool in rows:
            assert tool.mcp_server_id is not None
            found[tool.mcp_server_id].append(tool)
        return found

    async def add(self, url: str, tools: Sequence[NewTool], *, owner_id: uuid.UUID) -> MCPServer:
        """Store an active server and its tools.

        Raises:
            AlreadyExistsError: The owner already has a server at ``url``.
        """
        server = MCPServer(id=uuid.uuid4(), server_url=url, creator_id=owner_id, is_active=True)
        async with self._writing():
            self.session.add(server)
            await self.session.flush()
            self.session.add_all(
                MCPTool(
                    id=uuid.uuid4(),
                    name=tool.name,
                    alias=tool.alias,
                    description=tool.description,
                    input_schema=tool.input_schema,
                    annotations=tool.annotations,
                    mcp_server_id=server.id,
                )
                for tool in tools
            )
        return server

    async def list_for_user(
        self,
        owner_id: uuid.UUID,
        *,
        active_only: bool = True,
        newest_first: bool = False,
        offset: int = 0,
        limit: int | None = 100,
    ) -> Sequence[MCPServer]:
        """List the owner's (active) servers, oldest first unless ``newest_first``."""
        stmt = select(MCPServer).where(MCPServer.creator_id == owner_id)
        if active_only:
            stmt = stmt.where(MCPServer.is_active.is_(True))
        if newest_first:
            stmt = stmt.order_by(MCPServer.created_at.desc(), MCPServer.id.desc())
        else:
            stmt = stmt.order_by(MCPServer.created_at, MCPServer.id)
        return (await self.session.scalars(stmt.offset(offset).limit(limit))).all()

    async def delete(self, server_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
        """Delete the owner's server; its tools go with it (the foreign key cascades).

        Raises:
            NotFoundError: No such server of this owner.
        """
        result = await self.session.execute(
            delete(MCPServer).where(MCPServer.id == server_id, MCPServer.creator_id == owner_id)
        )
        if not getattr(result, "rowcount", 0):
            raise NotFoundError(f"MCP server {server_id} not found")

    async def set_reachable(self, url: str, tools: Sequence[NewTool] | None) -> None:
        """Record a probe of ``url`` for every owner's server at it.

        ``tools`` None means unreachable: the servers become inactive. Otherwise they
        become active and their tools are updated by name (description, schema,
        annotations); tools the server newly offers are added with a new alias, and
        tools it no longer offers are removed.
        """
        servers = list(
            await self.session.scalars(select(MCPServer).where(MCPServer.server_url == url))
        )
        active = tools is not None
        for server in servers:
            if server.is_active != active:
                server.is_active = active
        if tools is not None and servers:
            by_server = await self.tools([server.id for server in servers])
            offered = {tool.name: tool for tool in tools}
            for server in servers:
                stored = {tool.name: tool for tool in by_server[server.id]}
                for name, tool in offered.items():
                    row = stored.get(name)
                    if row is None:
                        self.session.add(
                            MCPTool(
                                id=uuid.uuid4(),
                                name=tool.name,
                                alias=tool.alias,
                                description=tool.description,
                                input_schema=tool.input_schema,
                                annotations=tool.annotations,
                                mcp_server_id=server.id,
                            )
                        )
                        continue
                    # Only real changes are written (and notified).
                    if row.description != tool.description:
                        row.description = tool.description
                    if row.input_schema != tool.input_schema:
                        row.input_schema = tool.input_schema
                    if row.annotations != tool.annotations:
                        row.annotations = tool.annotations
                for name, row in stored.items():
                    if name not in offered:
                        await self.session.delete(row)
        await self.session.flush()


class A2ARepository(Repository):
    """A2A agents' cards, scoped to their creator."""

    async def get(self, card_id: uuid.UUID, *, owner_id: uuid.UUID) -> A2ACard | None:
        """Return the owner's card, or None."""
        return await self.session.scalar(
            select(A2ACard).where(A2ACard.id == card_id, A2ACard.creator_id == owner_id)
        )

    async def get_by_url(self, url: str, *, owner_id: uuid.UUID) -> A2ACard | None:
        """Return the owner's card at ``url``, or None."""
        return await self.session.scalar(
            select(A2ACard).where(A2ACard.server_url == url, A2ACard.creator_id == owner_id)
        )

    async def add(
        self,
        *,
        url: str,
        name: str,
        alias: str,
        description: str,
        card_content: dict[str, Any],
        owner_id: uuid.UUID,
    ) -> A2ACard:
        """Store an active card.

        Raises:
            AlreadyExistsError: The owner already has a card at ``url``.
        """
        card = A2ACard(
            id=uuid.uuid4(),
            name=name,
            alias=alias,
            description=description,
            server_url=url,
            card_content=card_content,
            is_active=True,
            creator_id=owner_id,
        )
        async with self._writing():
            self.session.add(card)
        return card

    async def list_for_user(
        self,
        owner_id: uuid.UUID,
        *,
        active_only: bool = False,
        offset: int = 0,
        limit: int | None = 100,
    ) -> Sequence[A2ACard]:
        """List the owner's (active) cards, newest first."""
        stmt = select(A2ACard).where(A2ACard.creator_id == owner_id)
        if active_only:
            stmt = stmt.where(A2ACard.is_active.is_(True))
        stmt = stmt.order_by(A2ACard.created_at.desc(), A2ACard.id.desc())
        return (await self.session.scalars(stmt.offset(offset).limit(limit))).all()

    async def delete(self, card_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
        """Delete the owner's card.

        Raises:
            NotFoundError: No such card of this owner.
        """
        result = await self.session.execute(
            delete(A2ACard).where(A2ACard.id == card_id, A2ACard.creator_id == owner_id)
        )
        if not getattr(result, "rowcount", 0):
            raise NotFoundError(f"A2A card {card_id} not found")

    async def set_reachable(self, url: str, card_content: dict[str, Any] | None) -> None:
        """Record a fetch of the card at ``url`` for every owner's card there.

        None means unreachable: the cards become inactive. Otherwise they become active
        with the new content.
        """
        cards = await self.session.scalars(select(A2ACard).where(A2ACard.server_url == url))
        for card in cards:
            if card.is_active != (card_content is not None):
                card.is_active = card_content is not None
            if card_content is not None and card.card_content != card_content:
                card.card_content = card_content
        await self.session.flush()


async def distinct_urls(session: Any) -> ToolSourceUrls:
    """Return the distinct URLs of all MCP servers and A2A cards, of every user."""
    mcp = await session.scalars(
        select(MCPServer.server_url).distinct().order_by(MCPServer.server_url)
    )
    a2a = await session.scalars(select(A2ACard.server_url).distinct().order_by(A2ACard.server_url))
    return ToolSourceUrls(list(mcp), list(a2a))


async def reevaluate_tool_flows(session: Any) -> int:
    """Set each flow holding an MCP or A2A item active iff every item is valid for its
    owner; return how many changed."""
    flows = list(
        await session.scalars(
            select(AgentFlow).where(
                text(
                    'agentworkflows.flow::jsonb @> \'[{"type": "mcp"}]\' '
                    'OR agentworkflows.flow::jsonb @> \'[{"type": "a2a"}]\''
                )
            )
        )
    )
    valid: dict[uuid.UUID, set[str]] = {}
    changed = 0
    for flow in flows:
        if flow.creator_id is None:
            continue
        if flow.creator_id not in valid:
            valid[flow.creator_id] = await valid_item_keys(session, flow.creator_id)
        active = items_eligible(flow_item_ids(flow.flow), valid[flow.creator_id])
        if flow.is_active != active:
            await session.execute(
                update(AgentFlow).where(AgentFlow.id == flow.id).values(is_active=active)
            )
            changed += 1
    return changed
