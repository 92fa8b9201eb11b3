"""MCP servers and A2A agents: placeholders until they are supported."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import tag_blueprint

from ..auth import Caller, requires_user
from ..common import PageQuery, json_response
from ..errors import APIError
from ..validation import responds, validate_body, validate_path, validate_query

__all__ = ["blueprint"]

blueprint = Blueprint("integrations", __name__)
tag_blueprint(blueprint, ["mcp", "a2a"])

MCP_UNSUPPORTED = "MCP servers are not supported yet"
A2A_UNSUPPORTED = "A2A agents are not supported yet"


class ServerUrlBody(BaseModel):
    server_url: str


@blueprint.get("/api/mcp/servers")
@requires_user
@validate_query(PageQuery)
@responds(list[dict[str, Any]])
async def list_mcp_servers(query: PageQuery, caller: Caller) -> Any:
    """List the caller's MCP servers (none yet)."""
    return json_response([], model=list[Any])


@blueprint.post("/api/mcp/servers")
@requires_user
@validate_body(ServerUrlBody)
async def add_mcp_server(data: ServerUrlBody, caller: Caller) -> Any:
    """Add an MCP server (not supported yet)."""
    raise APIError(400, MCP_UNSUPPORTED)


@blueprint.get("/api/mcp/servers/<server_id>")
@requires_user
@validate_path(server_id=UUID)
async def get_mcp_server(server_id: UUID, caller: Caller) -> Any:
    """Return one MCP server of the caller (none yet)."""
    raise APIError(400, f"MCP server with id: {server_id} was not found")


@blueprint.delete("/api/mcp/servers/<server_id>")
@requires_user
@validate_path(server_id=UUID)
async def delete_mcp_server(server_id: UUID, caller: Caller) -> Any:
    """Delete an MCP server (not supported yet)."""
    raise APIError(400, MCP_UNSUPPORTED)


@blueprint.get("/api/a2a/agents")
@requires_user
@validate_query(PageQuery)
@responds(list[dict[str, Any]])
async def list_a2a_agents(query: PageQuery, caller: Caller) -> Any:
    """List the caller's A2A agents (none yet)."""
    return json_response([], model=list[Any])


@blueprint.post("/api/a2a/agents")
@requires_user
@validate_body(ServerUrlBody)
async def add_a2a_agent(data: ServerUrlBody, caller: Caller) -> Any:
    """Add an A2A agent (not supported yet)."""
    raise APIError(400, A2A_UNSUPPORTED)


@blueprint.get("/api/a2a/agents/<agent_id>")
@requires_user
@validate_path(agent_id=UUID)
async def get_a2a_agent(agent_id: UUID, caller: Caller) -> Any:
    """Return one A2A agent of the caller (none yet)."""
    raise APIError(400, f"A2A agent with id: '{agent_id}' does not exist ")


@blueprint.delete("/api/a2a/agents/<agent_id>")
@requires_user
@validate_path(agent_id=UUID)
async def delete_a2a_agent(agent_id: UUID, caller: Caller) -> Any:
    """Delete an A2A agent (not supported yet)."""
    raise APIError(400, A2A_UNSUPPORTED)
