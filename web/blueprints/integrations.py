"""MCP servers and A2A agents: the tool sources users add by URL.

Adding one probes it (the MCP server's tools, the agent's card) through the outbound
policy (`actors.tools`); nothing is stored unless the probe succeeds. The refresher
actor probes them again periodically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AnyHttpUrl, BaseModel
from quart import Blueprint
from quart_schema import tag

from actors.tools import (
    CardInvalidError,
    OutboundPolicy,
    ProbeError,
    card_name,
    card_skill_descriptions,
    fetch_agent_card,
    list_mcp_tools,
    new_tools,
    stored_card_content,
)
from persistence import (
    A2ARepository,
    AlreadyExistsError,
    MCPRepository,
    NotFoundError,
    new_alias,
)

from ..auth import Caller, requires_user
from ..common import (
    PageQuery,
    catalogue_transaction,
    empty_response,
    format_timestamp,
    json_response,
    read_session,
)
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_body, validate_path, validate_query

if TYPE_CHECKING:
    from persistence import A2ACard, MCPServer, MCPTool

    from ..settings import Settings

__all__ = [
    "a2a_schema",
    "blueprint",
    "card_item",
    "mcp_schema",
    "outbound_policy",
    "tool_item",
]

blueprint = Blueprint("integrations", __name__)

MCP_UNREACHABLE = (
    "Could not access MCP server on: {url}. Make sure your MCP server supports "
    "'streamable-http' protocol and is remotely accesible."
)
A2A_UNREACHABLE = "Cannot retrieve data about a2a card on url: {url}"


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """Return the policy for requests to users' URLs (MCP servers, A2A agents)."""
    return OutboundPolicy(
        allow_private=settings.outbound_allows_private,
        connect_timeout=settings.OUTBOUND_CONNECT_TIMEOUT,
        read_timeout=settings.OUTBOUND_READ_TIMEOUT,
        deadline=settings.OUTBOUND_DEADLINE,
        max_bytes=settings.OUTBOUND_MAX_BYTES,
    )


class ServerUrlBody(BaseModel):
    server_url: AnyHttpUrl


# -- rendering, shared with the active list ------------------------------------------


def mcp_schema(tool: MCPTool, title: str, description: str | None = None) -> dict[str, Any]:
    """Render a tool's JSON schema: its input schema spread, titled ``title``."""
    schema = dict(tool.input_schema) if isinstance(tool.input_schema, dict) else {}
    schema.pop("title", None)
    properties = schema.get("properties")
    return {
        **schema,
        "description": tool.description if description is None else description,
        "properties": properties if isinstance(properties, dict) else {},
        "required": schema.get("required", []) if properties else [],
        "title": title,
        "type": schema.get("type", "object"),
    }


_A2A_PROPERTIES = {
    "task": {"type": "string", "description": "A meaningful, well-formulated task for the agent"},
    "text": {"type": "string"},
}


def a2a_schema(card: A2ACard, title: str) -> dict[str, Any]:
    """Render the tool schema of an A2A agent: a task and a text."""
    skills = "\n".join(card_skill_descriptions(card.card_content))
    return {
        "title": title,
        "description": f"{card.description or ''}\nSKILLS:\n{skills}",
        "properties": _A2A_PROPERTIES,
        "required": ["task", "text"],
        "type": "object",
    }


def a2a_flow_schema(alias: str, description: str) -> dict[str, Any]:
    """Render the schema of a flow whose first item is an A2A agent."""
    return {
        "name": alias,
        "description": description,
        "properties": _A2A_PROPERTIES,
        "required": ["task", "text"],
        "type": "object",
    }


def tool_item(tool: MCPTool, server: MCPServer, *, by_alias: bool) -> dict[str, Any]:
    """Render a tool of an active server as a unified item (no ``is_active`` key)."""
    name = (tool.alias or tool.name) if by_alias else tool.name
    return {
        "id": str(tool.id),
        "name": name,
        "type": "mcp",
        "url": server.server_url,
        "agent_schema": mcp_schema(tool, tool.alias or tool.name),
        "created_at": format_timestamp(server.created_at),
        "updated_at": format_timestamp(server.updated_at),
    }


def card_item(card: A2ACard, *, by_alias: bool) -> dict[str, Any]:
    """Render an active card as a unified item."""
    name = (card.alias or card.name or "") if by_alias else (card.name or "")
    return {
        "id": str(card.id),
        "name": name,
        "type": "a2a",
        "url": card.server_url.rstrip("/") + "/",
        "agent_schema": a2a_schema(card, name),
        "created_at": format_timestamp(card.created_at),
        "updated_at": format_timestamp(card.updated_at),
        "is_active": True,
    }


def _tool_row(tool: MCPTool) -> dict[str, Any]:
    return {
        "id": str(tool.id),
        "name": tool.name,
        "alias": tool.alias,
        "description": tool.description,
        "inputSchema": tool.input_schema,
        "annotations": tool.annotations,
        "mcp_server_id": str(tool.mcp_server_id),
        "created_at": format_timestamp(tool.created_at),
        "updated_at": format_timestamp(tool.updated_at),
    }


def _server_row(server: MCPServer, tools: list[MCPTool]) -> dict[str, Any]:
    return {
        "id": str(server.id),
        "name": server.name,
        "description": server.description,
        "server_url": server.server_url,
        "created_at": format_timestamp(server.created_at),
        "updated_at": format_timestamp(server.updated_at),
        "creator_id": str(server.creator_id),
        "is_active": server.is_active,
        "mcp_tools": [_tool_row(tool) for tool in tools],
    }


def _card_row(card: A2ACard) -> dict[str, Any]:
    return {
        "id": str(card.id),
        "name": card.name,
        "alias": card.alias,
        "description": card.description,
        "server_url": card.server_url,
        "card_content": card.card_content,
        "is_active": card.is_active,
        "creator_id": str(card.creator_id),
        "created_at": format_timestamp(card.created_at),
        "updated_at": format_timestamp(card.updated_at),
    }


# -- MCP servers ------------------------------------------------------------------------


@blueprint.get("/api/mcp/servers")
@tag(["mcp"])
@requires_user
@validate_query(PageQuery)
@responds(list[dict[str, Any]])
async def list_mcp_servers(query: PageQuery, caller: Caller) -> Any:
    """List the caller's active MCP servers with their tools, oldest first."""
    async with read_session() as session:
        repository = MCPRepository(session)
        servers = await repository.list_for_user(
            caller.user_id, offset=query.offset, limit=query.limit
        )
        tools = await repository.tools([server.id for server in servers])
    body = [_server_row(server, tools[server.id]) for server in servers]
    return json_response(body, model=list[dict[str, Any]])


@blueprint.post("/api/mcp/servers")
@tag(["mcp"])
@requires_user
@validate_body(ServerUrlBody)
@responds(dict[str, Any])
async def add_mcp_server(data: ServerUrlBody, caller: Caller) -> Any:
    """Add an MCP server: list its tools (streamable HTTP, or SSE) and store them."""
    url = str(data.server_url)
    try:
        listed = await list_mcp_tools(url, outbound_policy(services().settings))
    except ProbeError:
        raise APIError(400, MCP_UNREACHABLE.format(url=url)) from None
    async with catalogue_transaction(caller.user_id) as session:
        repository = MCPRepository(session)
        server = await repository.get_by_url(url, owner_id=caller.user_id)
        if server is None:
            try:
                server = await repository.add(url, new_tools(listed), owner_id=caller.user_id)
            except AlreadyExistsError:
                server = await repository.get_by_url(url, owner_id=caller.user_id)
                assert server is not None
        server.is_active = True
        await session.flush()
        tools = (await repository.tools([server.id]))[server.id]
    body = {
        "server_url": server.server_url,
        "mcp_tools": [mcp_schema(tool, tool.alias or tool.name) for tool in tools],
        "is_active": server.is_active,
        "created_at": format_timestamp(server.created_at),
        "updated_at": format_timestamp(server.updated_at),
    }
    return json_response(body, model=dict[str, Any])


@blueprint.get("/api/mcp/servers/<server_id>")
@tag(["mcp"])
@requires_user
@validate_path(server_id=UUID)
@responds(dict[str, Any])
async def get_mcp_server(server_id: UUID, caller: Caller) -> Any:
    """Return one MCP server of the caller (active or not) with its tools."""
    async with read_session() as session:
        repository = MCPRepository(session)
        server = await repository.get(server_id, owner_id=caller.user_id)
        if server is None:
            raise APIError(400, f"MCP server with id: {server_id} was not found")
        tools = await repository.tools([server.id])
    return json_response(_server_row(server, tools[server.id]), model=dict[str, Any])


@blueprint.delete("/api/mcp/servers/<server_id>")
@tag(["mcp"])
@requires_user
@validate_path(server_id=UUID)
@responds(None, 204)
async def delete_mcp_server(server_id: UUID, caller: Caller) -> Any:
    """Delete one of the caller's MCP servers and its tools."""
    try:
        async with catalogue_transaction(caller.user_id) as session:
            await MCPRepository(session).delete(server_id, owner_id=caller.user_id)
    except NotFoundError:
        raise APIError(400, f"MCP server with ID {server_id} was not found") from None
    return empty_response()


# -- A2A agents -------------------------------------------------------------------------


def _base_url(url: AnyHttpUrl) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}"


@blueprint.get("/api/a2a/agents")
@tag(["a2a"])
@requires_user
@validate_query(PageQuery)
@responds(list[dict[str, Any]])
async def list_a2a_agents(query: PageQuery, caller: Caller) -> Any:
    """List the caller's A2A agents, newest first."""
    async with read_session() as session:
        cards = await A2ARepository(session).list_for_user(
            caller.user_id, offset=query.offset, limit=query.limit
        )
    return json_response([_card_row(card) for card in cards], model=list[dict[str, Any]])


@blueprint.post("/api/a2a/agents")
@tag(["a2a"])
@requires_user
@validate_body(ServerUrlBody)
@responds(dict[str, Any])
async def add_a2a_agent(data: ServerUrlBody, caller: Caller) -> Any:
    """Add an A2A agent: fetch its card from its well-known path, validate and store it."""
    base = _base_url(data.server_url)
    try:
        card = await fetch_agent_card(base, outbound_policy(services().settings))
    except CardInvalidError as exc:
        raise APIError(400, f"Invalid a2a card on url: {base}: {exc}") from None
    except ProbeError:
        raise APIError(400, A2A_UNREACHABLE.format(url=str(data.server_url))) from None
    name = card_name(card)
    async with catalogue_transaction(caller.user_id) as session:
        repository = A2ARepository(session)
        row = await repository.get_by_url(base, owner_id=caller.user_id)
        if row is None:
            try:
                row = await repository.add(
                    url=base,
                    name=name,
                    alias=new_alias(name),
                    description=str(card.get("description") or ""),
                    card_content=stored_card_content(card, base),
                    owner_id=caller.user_id,
                )
            except AlreadyExistsError:
                row = await repository.get_by_url(base, owner_id=caller.user_id)
                assert row is not None
        row.is_active = True
        await session.flush()
    body = {key: value for key, value in _card_row(row).items() if value is not None}
    for key in ("is_active", "creator_id"):
        body.pop(key)
    return json_response(body, model=dict[str, Any])


@blueprint.get("/api/a2a/agents/<agent_id>")
@tag(["a2a"])
@requires_user
@validate_path(agent_id=UUID)
@responds(dict[str, Any])
async def get_a2a_agent(agent_id: UUID, caller: Caller) -> Any:
    """Return one A2A agent of the caller."""
    async with read_session() as session:
        card = await A2ARepository(session).get(agent_id, owner_id=caller.user_id)
    if card is None:
        raise APIError(400, f"A2A agent with id: '{agent_id}' does not exist ")
    return json_response(_card_row(card), model=dict[str, Any])


@blueprint.delete("/api/a2a/agents/<agent_id>")
@tag(["a2a"])
@requires_user
@validate_path(agent_id=UUID)
@responds(None, 204)
async def delete_a2a_agent(agent_id: UUID, caller: Caller) -> Any:
    """Delete one of the caller's A2A agents."""
    try:
        async with catalogue_transaction(caller.user_id) as session:
            await A2ARepository(session).delete(agent_id, owner_id=caller.user_id)
    except NotFoundError:
        # The original's message, which names an MCP server.
        raise APIError(400, f"MCP server with ID {agent_id} was not found") from None
    return empty_response()
