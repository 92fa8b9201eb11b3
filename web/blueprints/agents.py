"""GenAI agents: registration, reads, updates, deletion and the active-tools list."""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, TypeAdapter, field_validator
from quart import Blueprint
from quart_schema import tag_blueprint

from persistence import (
    MAX_NAME_LENGTH,
    A2ARepository,
    Agent,
    AgentFlow,
    AgentListing,
    AgentListings,
    AgentRepository,
    AlreadyExistsError,
    FlowRepository,
    MCPRepository,
    NotFoundError,
    flow_item_ids,
    is_eligible,
    new_alias,
    valid_item_keys,
)
from persistence import normalise_name as stored_name

from ..auth import (
    Caller,
    issue_agent_token,
    requires_service,
    requires_user,
    requires_user_or_agent,
)
from ..common import (
    PageQuery,
    RenderCache,
    Timestamp,
    app_render_cache,
    catalogue_list_response,
    catalogue_transaction,
    empty_response,
    format_timestamp,
    json_array,
    json_response,
    read_driver,
    read_session,
)
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_body, validate_path, validate_query
from .integrations import a2a_flow_schema, card_item, mcp_schema, tool_item

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.ext.asyncio import AsyncSession

    from persistence import A2ACard, MCPServer, MCPTool

__all__ = ["AgentDTO", "agent_dto", "blueprint", "make_alias", "normalise_name"]

blueprint = Blueprint("agents", __name__)
tag_blueprint(blueprint, ["agents"])


def normalise_name(name: str, kind: str = "Agent") -> str:
    """Normalise ``name`` as stored names are; refuse more than 55 characters.

    Raises:
        ValueError: The name is too long (reported as a 422 ``value_error``).
    """
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"{kind} name must be less than {MAX_NAME_LENGTH} characters")
    return stored_name(name)


make_alias = new_alias


def _schema_object(value: dict[Any, Any] | str) -> dict[Any, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError("input_parameters must be a JSON object")
    return parsed


def named_schema(schema: Any, name: str) -> Any:
    """Return ``schema`` with ``function.name`` set to ``name`` when a function exists."""
    if isinstance(schema, dict) and isinstance(schema.get("function"), dict):
        return {**schema, "function": {**schema["function"], "name": name}}
    return schema


class PatchAgentBody(BaseModel):
    name: str
    description: str
    input_parameters: dict[Any, Any] | str

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return normalise_name(value)

    @field_validator("input_parameters")
    @classmethod
    def _schema(cls, value: dict[Any, Any] | str) -> dict[Any, Any]:
        return _schema_object(value)


class RegisterAgentBody(PatchAgentBody):
    id: Any = None
    is_active: bool | None = None


class RegisteredAgent(BaseModel):
    id: UUID
    name: str
    alias: str
    description: str
    input_parameters: Any
    jwt: str
    created_at: Timestamp
    updated_at: Timestamp


class AgentDTO(BaseModel):
    agent_id: UUID
    agent_name: str
    agent_alias: str
    agent_description: str
    agent_schema: Any
    is_active: bool
    agent_jwt: str | None
    created_at: Timestamp
    updated_at: Timestamp


def agent_dto(agent: Agent | AgentListing, *, rename: bool = True) -> dict[str, Any]:
    """Render an agent (a row, or a listed one with its schema as stored text) as a
    JSON-ready :class:`AgentDTO`.

    Built as plain data, serialised once: ``rename`` puts the name into
    ``agent_schema.function.name``.
    """
    if isinstance(agent, AgentListing):
        schema = json.loads(agent.input_parameters_json)
    else:
        schema = agent.input_parameters
    return {
        "agent_id": str(agent.id),
        "agent_name": agent.name,
        "agent_alias": agent.alias,
        "agent_description": agent.description,
        "agent_schema": named_schema(schema, agent.name) if rename else schema,
        "is_active": agent.is_active,
        "agent_jwt": agent.jwt,
        "created_at": format_timestamp(agent.created_at),
        "updated_at": format_timestamp(agent.updated_at),
    }


class AgentListQuery(PageQuery):
    name: str | None = None
    description: str | None = None


class ActiveQuery(PageQuery):
    agent_type: Literal["genai", "mcp", "a2a", "all"] = "all"
    user_id: UUID | None = None


class ActiveOut(BaseModel):
    count_active_connections: int
    active_connections: list[dict[str, Any]]


@blueprint.get("/api/agents/")
@requires_user_or_agent
@validate_query(AgentListQuery)
@responds(list[AgentDTO])
async def list_agents(query: AgentListQuery, caller: Caller) -> Any:
    """List the caller's agents (see the filters)."""
    page = query.model_dump()

    async def build() -> bytes:
        cache = app_render_cache("genai.listed_agents", _new_cache)
        async with read_driver() as driver:
            agents = AgentListings(driver)
            fragments = cache.get_all(await agents.versions(caller.user_id, **page))
            if fragments is None:
                listed = await agents.rows(caller.user_id, **page)
                fragments = [
                    cache.get_or_render(agent.version, partial(_render_listed, agent))
                    for agent in listed
                ]
        return json_array(fragments)

    key = tuple(sorted(page.items()))
    return await catalogue_list_response("genai.agent_lists", caller.user_id, key, build)


def _render_listed(agent: AgentListing) -> bytes:
    """Serialise a listed agent as :func:`agent_dto` renders it."""
    return _DTO_JSON.dump_json(agent_dto(agent))


_DTO_JSON: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any])


def _new_cache() -> RenderCache[bytes]:
    # Listed agents by row version: otherwise every list decodes and re-encodes every
    # schema, and reads and formats every column.
    return RenderCache(measure=len, max_bytes=16 * 2**20)


@blueprint.get("/api/agents/active")
@requires_service
@validate_query(ActiveQuery)
@responds(ActiveOut)
async def active_agents(query: ActiveQuery, caller: Caller) -> Any:
    """List what the caller's master agent may use: eligible flows, then active agents,
    tools of active MCP servers and active A2A agents (by ``agent_type``).

    The master asks on every chat turn; the answer is cached as the lists are.
    """

    async def build() -> bytes:
        async with read_session() as session:
            items = await _active_items(session, caller.user_id, query)
        out = {"count_active_connections": len(items), "active_connections": items}
        return _DTO_JSON.dump_json(out)

    key = ("active", query.agent_type, query.offset, query.limit)
    return await catalogue_list_response("genai.active_lists", caller.user_id, key, build)


def agent_item(agent: Agent) -> dict[str, Any]:
    """Render an active agent as a unified item (name = alias)."""
    return {
        "id": str(agent.id),
        "name": agent.alias,
        "type": "genai",
        "agent_schema": named_schema(agent.input_parameters, agent.alias),
        "created_at": format_timestamp(agent.created_at),
        "updated_at": format_timestamp(agent.updated_at),
        "is_active": True,
    }


async def _active_items(
    session: AsyncSession, user_id: UUID, query: ActiveQuery
) -> list[dict[str, Any]]:
    """List the unified items of ``query.agent_type`` (see §13.6 of the contract)."""
    kind, offset, limit = query.agent_type, query.offset, query.limit
    if kind == "mcp":
        servers = await MCPRepository(session).list_for_user(
            user_id, newest_first=True, offset=offset, limit=limit
        )
        tools = await MCPRepository(session).tools([server.id for server in servers])
        return [tool_item(t, s, by_alias=False) for s in servers for t in tools[s.id]]
    if kind == "a2a":
        cards = await A2ARepository(session).list_for_user(
            user_id, active_only=True, offset=offset, limit=limit
        )
        return [card_item(card, by_alias=False) for card in cards]
    agents = AgentRepository(session)
    everything = await agents.list_active_for_user(user_id, limit=None)
    flows = await FlowRepository(session).list_for_user(user_id, limit=None)
    valid = await valid_item_keys(session, user_id)
    sources = _FlowSources({str(agent.id): agent for agent in everything})
    if kind == "all" or any(_first_kind(flow) != "genai" for flow in flows):
        await sources.load(session, user_id)
    items = [flow_item(flow, sources) for flow in flows if is_eligible(flow, valid)]
    if kind == "genai":
        page = await agents.list_active_for_user(user_id, offset=offset, limit=limit)
        return items + [agent_item(agent) for agent in page]
    # One newest-first page over agents, tools (with their server's timestamps) and cards.
    union: list[tuple[datetime, dict[str, Any]]] = [
        (agent.created_at, agent_item(agent)) for agent in everything
    ]
    union += [
        (server.created_at, tool_item(tool, server, by_alias=True))
        for tool, server in sources.tools.values()
    ]
    union += [(card.created_at, card_item(card, by_alias=True)) for card in sources.cards.values()]
    union.sort(key=lambda entry: entry[0], reverse=True)
    return items + [item for _, item in union[offset : offset + limit]]


def _first_kind(flow: AgentFlow) -> str:
    items = flow_item_ids(flow.flow)
    return items[0][1] if items else "genai"


class _FlowSources:
    """The caller's active agents, tools of active servers and active cards, by id."""

    def __init__(self, agents: dict[str, Agent]) -> None:
        self.agents = agents
        self.tools: dict[str, tuple[MCPTool, MCPServer]] = {}
        self.cards: dict[str, A2ACard] = {}

    async def load(self, session: AsyncSession, user_id: UUID) -> None:
        """Read the tools and cards (agents come with the constructor)."""
        servers = await MCPRepository(session).list_for_user(user_id, newest_first=True, limit=None)
        tools = await MCPRepository(session).tools([server.id for server in servers])
        self.tools = {str(t.id): (t, s) for s in servers for t in tools[s.id]}
        cards = await A2ARepository(session).list_for_user(user_id, active_only=True, limit=None)
        self.cards = {str(card.id): card for card in cards}


def flow_item(flow: AgentFlow, sources: _FlowSources) -> dict[str, Any]:
    """Render an eligible flow as a unified item, its schema taken from its first item."""
    items = flow_item_ids(flow.flow)
    ids = [item_id for item_id, _ in items]
    first_id, first_kind = items[0]
    schema: Any
    if first_kind == "mcp":
        tool, _ = sources.tools[first_id]
        schema = mcp_schema(tool, flow.alias, flow.description)
    elif first_kind == "a2a":
        schema = a2a_flow_schema(flow.alias, flow.description)
    else:
        schema = sources.agents[first_id].input_parameters
        if isinstance(schema, dict) and isinstance(schema.get("function"), dict):
            function = dict(schema["function"])
            if function.get("name"):
                function["name"] = flow.alias
            if function.get("description"):
                function["description"] = flow.description
            schema = {**schema, "function": function}
    return {
        "id": str(flow.id),
        "name": flow.alias,
        "type": "flow",
        "agent_schema": schema,
        "flow": ids,
        "created_at": format_timestamp(flow.created_at),
        "updated_at": format_timestamp(flow.updated_at),
        "is_active": flow.is_active,
    }


@blueprint.get("/api/agents/<agent_id>")
@requires_user_or_agent
@validate_path(agent_id=UUID)
@responds(AgentDTO)
async def get_agent(agent_id: UUID, caller: Caller) -> Any:
    """Return one of the caller's agents."""
    async with read_session() as session:
        agent = await AgentRepository(session).get(agent_id, owner_id=caller.user_id)
    if agent is None:
        raise APIError(400, f"Agent '{agent_id}' does not exist")
    return json_response(agent_dto(agent), model=dict[str, Any])


@blueprint.post("/api/agents/register")
@requires_user
@validate_body(RegisterAgentBody)
@responds(RegisteredAgent)
async def register_agent(data: RegisterAgentBody, caller: Caller) -> Any:
    """Create an agent record and issue its non-expiring token."""
    agent_id = _agent_id(data)
    found = services()
    try:
        async with catalogue_transaction(caller.user_id) as session:
            agent = await AgentRepository(session).add(
                id=agent_id,
                name=data.name,
                alias=make_alias(data.name),
                description=data.description,
                input_parameters=data.input_parameters,
                jwt=issue_agent_token(agent_id, caller.user_id, found.settings),
                creator_id=caller.user_id,
            )
    except AlreadyExistsError:
        raise APIError(400, f"Agent with {agent_id} already exists") from None
    return json_response(RegisteredAgent.model_validate(agent, from_attributes=True))


def _agent_id(data: RegisterAgentBody) -> UUID:
    if "id" not in data.model_fields_set:
        return uuid4()
    if data.id is None:
        raise APIError(400, "Parameter 'id' must not be a null")
    try:
        if isinstance(data.id, str):
            return UUID(data.id)
    except ValueError:
        pass
    raise APIError(400, "Parameter 'id' must be a valid uuid")


@blueprint.patch("/api/agents/<agent_id>")
@requires_user
@validate_path(agent_id=UUID)
@validate_body(PatchAgentBody)
@responds(AgentDTO)
async def patch_agent(agent_id: UUID, data: PatchAgentBody, caller: Caller) -> Any:
    """Replace an agent's name, description and schema; the alias stays."""
    try:
        async with catalogue_transaction(caller.user_id) as session:
            agent = await AgentRepository(session).patch(
                agent_id,
                owner_id=caller.user_id,
                name=data.name,
                description=data.description,
                input_parameters=data.input_parameters,
            )
    except NotFoundError:
        raise APIError(400, f"Agent '{agent_id}' does not exist") from None
    return json_response(agent_dto(agent, rename=False), model=dict[str, Any])


@blueprint.delete("/api/agents/<agent_id>")
@requires_user
@validate_path(agent_id=UUID)
@responds(None, 204)
async def delete_agent(agent_id: UUID, caller: Caller) -> Any:
    """Delete one of the caller's agents; their flows using it become inactive."""
    try:
        async with catalogue_transaction(caller.user_id) as session:
            await AgentRepository(session).delete(agent_id, owner_id=caller.user_id)
            await FlowRepository(session).deactivate_containing(agent_id, owner_id=caller.user_id)
    except NotFoundError:
        raise APIError(400, f"Agent {agent_id} was not found") from None
    return empty_response()
