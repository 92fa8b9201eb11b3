"""The tools a user's turn may call: eligible flows, then active genai agents, the
tools of active MCP servers and active A2A agents.

The list ``GET /api/agents/active?agent_type=all`` (API.md §13.6) answers the upstream
master, read straight from the repositories, and kept per user for as long as the
user's catalogue version (`persistence.CatalogueVersions`, moved on by the database's
notifications, MCP servers' included) stays the same: a turn after an unchanged
catalogue reads nothing. Each tool is named by its alias, which the model sees as the
function name.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import uuid
from typing import TYPE_CHECKING, Any

from actors.tools import card_skill_descriptions
from persistence import (
    A2ARepository,
    AgentRepository,
    FlowRepository,
    MCPRepository,
    flow_item_ids,
    is_eligible,
    item_key,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from persistence import A2ACard, Agent, AgentFlow, CatalogueVersions, MCPServer, MCPTool

__all__ = [
    "A2A",
    "GENAI",
    "MCP",
    "Tool",
    "ToolCatalogue",
    "a2a_tool",
    "agent_tool",
    "flow_tool",
    "function_name",
    "mcp_tool",
]

GENAI = "genai"
FLOW = "flow"
MCP = "mcp"
A2A = "a2a"
# The upstream master's page of active agents (the route's default limit).
_AGENT_LIMIT = 100
_NAME_RE = re.compile(r"[^a-zA-Z0-9_-]")
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
# What the upstream master asks of the model for an A2A agent (PROTOCOL.md §3.3).
_A2A_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {
            "type": "string",
            "description": "A meaningful, well-formulated task for the agent",
        },
        "text": {"type": "string"},
    },
    "required": ["task", "text"],
}


@dataclasses.dataclass(frozen=True, slots=True)
class Tool:
    """One tool of a turn.

    Attributes:
        id: The agent's id (its router id), the MCP tool's, the A2A card's or the flow's.
        name: The alias: the tool list's ``name``.
        kind: ``genai``, ``mcp``, ``a2a`` or ``flow``.
        function: The OpenAI tool definition bound for the model.
        members: A flow's members, in order (as tools).
        url: An MCP tool's server URL, or the URL an A2A agent was added with.
        remote_name: An MCP tool's own name on its server.
        card: An A2A agent's card as stored, with its name and description.
    """

    id: str
    name: str
    kind: str
    function: dict[str, Any]
    members: tuple[Tool, ...] = ()
    url: str | None = None
    remote_name: str | None = None
    card: dict[str, Any] | None = None

    @property
    def function_name(self) -> str:
        """The name the model calls it by."""
        name: str = self.function["function"]["name"]
        return name

    @property
    def display_name(self) -> str:
        """The trace's name: the alias without its ``_xxxxxx`` suffix (PROTOCOL.md §3.5)."""
        return self.name.rsplit("_", 1)[0] if "_" in self.name else self.name


def function_name(alias: str) -> str:
    """Return ``alias`` as the API accepts a function name (``[a-zA-Z0-9_-]``, ≤ 64)."""
    return _NAME_RE.sub("_", alias)[:64] or "tool"


def _function(schema: Any, name: str, description: str | None = None) -> dict[str, Any]:
    """Build a function tool from an agent's stored schema, named ``name``."""
    function = schema.get("function") if isinstance(schema, dict) else None
    function = function if isinstance(function, dict) else {}
    parameters = function.get("parameters")
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        parameters = _EMPTY_PARAMETERS
    text = description if description else function.get("description")
    return {
        "type": "function",
        "function": {
            "name": function_name(name),
            "description": str(text or ""),
            "parameters": parameters,
        },
    }


def agent_tool(agent: Agent) -> Tool:
    """Render an active agent as a tool named by its alias."""
    return Tool(str(agent.id), agent.alias, GENAI, _function(agent.input_parameters, agent.alias))


def mcp_tool(tool: MCPTool, server: MCPServer) -> Tool:
    """Render a tool of an active MCP server, named by its alias, its schema as given."""
    alias = tool.alias or tool.name
    schema = dict(tool.input_schema) if isinstance(tool.input_schema, dict) else {}
    schema.pop("title", None)
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        schema = _EMPTY_PARAMETERS
    function = {"function": {"description": tool.description or "", "parameters": schema}}
    return Tool(
        str(tool.id),
        alias,
        MCP,
        _function(function, alias),
        url=server.server_url,
        remote_name=tool.name,
    )


def a2a_tool(card: A2ACard) -> Tool:
    """Render an active A2A agent, named by its alias: a task and a text, described by
    its card's description and its skills'."""
    alias = card.alias or card.name or "a2a_agent"
    skills = "\n".join(card_skill_descriptions(card.card_content))
    description = f"{card.description or ''}\nSKILLS:\n{skills}"
    function = {"function": {"description": description, "parameters": _A2A_PARAMETERS}}
    content = card.card_content if isinstance(card.card_content, dict) else {}
    stored = {**content, "name": card.name or alias, "description": card.description or ""}
    return Tool(
        str(card.id), alias, A2A, _function(function, alias), url=card.server_url, card=stored
    )


def flow_tool(flow: AgentFlow, members: tuple[Tool, ...]) -> Tool:
    """Render an eligible flow: the schema of its first member, its own name and text."""
    first = members[0].function["function"]
    schema = {"function": {**first, "description": flow.description or first["description"]}}
    return Tool(str(flow.id), flow.alias, FLOW, _function(schema, flow.alias), members)


class ToolCatalogue:
    """Users' tools, read from the database and kept while their catalogue is unchanged.

    Args:
        sessionmaker: Opens a read session.
        versions: The users' catalogue versions; while changes are not heard, every
            turn reads its tools.
        max_users: Users whose tools are kept; the least recently used go first.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        versions: CatalogueVersions | None,
        *,
        max_users: int = 4096,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._versions = versions
        self._kept: collections.OrderedDict[uuid.UUID, tuple[Any, list[Tool]]] = (
            collections.OrderedDict()
        )
        self._max_users = max_users

    async def tools_for(self, user_id: uuid.UUID) -> list[Tool]:
        """Return the user's tools: eligible flows first, then active agents (newest
        first), tools of active MCP servers and active A2A agents.

        Raises:
            sqlalchemy.exc.SQLAlchemyError, OSError: The database cannot be read.
        """
        # Read before the database: a change during the read moves it on.
        version = self._versions.current(user_id) if self._versions is not None else None
        if version is not None:
            kept = self._kept.get(user_id)
            if kept is not None and kept[0] == version:
                self._kept.move_to_end(user_id)
                return kept[1]
        tools = await self._read(user_id)
        if version is not None:
            self._kept[user_id] = (version, tools)
            self._kept.move_to_end(user_id)
            if len(self._kept) > self._max_users:
                self._kept.popitem(last=False)
        return tools

    async def _read(self, user_id: uuid.UUID) -> list[Tool]:
        async with self._sessionmaker() as session:
            flows = await FlowRepository(session).list_for_user(user_id, limit=None)
            everything = await AgentRepository(session).list_active_for_user(user_id, limit=None)
            servers = await MCPRepository(session).list_for_user(
                user_id, newest_first=True, limit=None
            )
            listed = await MCPRepository(session).tools([server.id for server in servers])
            cards = await A2ARepository(session).list_for_user(
                user_id, active_only=True, limit=None
            )
        # Every tool the user may call, by its flow item key (an agent's id, mcp:<id>,
        # a2a:<id>).
        by_key = {str(agent.id): agent_tool(agent) for agent in everything}
        mcp = [mcp_tool(tool, server) for server in servers for tool in listed[server.id]]
        a2a = [a2a_tool(card) for card in cards]
        by_key |= {item_key(tool.id, MCP): tool for tool in mcp}
        by_key |= {item_key(tool.id, A2A): tool for tool in a2a}
        tools = [
            flow_tool(
                flow, tuple(by_key[item_key(i, kind)] for i, kind in flow_item_ids(flow.flow))
            )
            for flow in flows
            if flow_item_ids(flow.flow) and is_eligible(flow, by_key.keys())
        ]
        tools += [by_key[str(agent.id)] for agent in everything[:_AGENT_LIMIT]]
        return tools + mcp + a2a
