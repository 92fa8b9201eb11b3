"""Probes of users' tool sources: an MCP server's tools, an A2A agent's card.

Each probe is one call with one deadline (the policy's, owned here); whatever goes
wrong on the way (a refused address, a time-out, a refused connection, an answer that
is not MCP, a card that does not validate) is one exception of this module, which the
routes turn into their 400s and the refresher into "unreachable".
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio

from ._outbound import OutboundPolicy, check_destination, open_http_client

__all__ = [
    "AGENT_CARD_PATHS",
    "CardInvalidError",
    "ProbeError",
    "ToolInfo",
    "card_name",
    "card_skill_descriptions",
    "fetch_agent_card",
    "list_mcp_tools",
    "stored_card_content",
]

AGENT_CARD_PATHS = ("/.well-known/agent-card.json", "/.well-known/agent.json")
"""Where an agent's card is looked for, in order: the SDK's path, then the older one."""

# The card's own fields an agent must fill for us to use it (the SDK marks more as
# REQUIRED, deep inside, which older agents leave empty; those are the agent's business).
_CARD_FIELDS = ("name", "description", "version", "supported_interfaces", "skills")


class ProbeError(Exception):
    """Raised when a server cannot be reached or does not answer as the protocol says."""


class CardInvalidError(ProbeError):
    """Raised when an agent answers with a card that does not validate."""


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """One tool an MCP server lists, as stored."""

    name: str
    description: str | None
    input_schema: dict[str, Any]
    annotations: dict[str, Any] | None


def _is_sse(url: str) -> bool:
    return urlsplit(url).path.rstrip("/").endswith("/sse")


async def list_mcp_tools(url: str, policy: OutboundPolicy) -> list[ToolInfo]:
    """Connect to the MCP server at ``url`` and list its tools (first page; waits).

    Streamable HTTP, or SSE for a URL whose path ends in ``/sse``; the whole exchange
    within ``policy.deadline``.

    Raises:
        ProbeError: Refused by the policy, unreachable, too slow, or not MCP.
    """
    # Imported on first use: the SDK takes about a second to import, which every start
    # (and the command line) would pay otherwise.
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    try:
        with anyio.fail_after(policy.deadline):
            await check_destination(url, policy)
            async with open_http_client(policy) as http:
                if _is_sse(url):
                    transport: Any = sse_client(
                        url,
                        timeout=policy.connect_timeout,
                        sse_read_timeout=policy.read_timeout,
                        httpx_client_factory=lambda *_args, **_kw: open_http_client(policy),
                    )
                else:
                    transport = streamable_http_client(url, http_client=http)
                async with Client(transport, cache=None) as client:
                    listed = await client.list_tools()
    except Exception as exc:
        # ExceptionGroups of the client's task groups too: every failure means the same.
        raise ProbeError(f"MCP server {url} cannot be listed: {exc!r}") from exc
    return [
        ToolInfo(
            name=tool.name,
            description=tool.description,
            input_schema=tool.input_schema,
            annotations=(
                tool.annotations.model_dump(mode="json", by_alias=True, exclude_none=True)
                if tool.annotations is not None
                else None
            ),
        )
        for tool in listed.tools
    ]


async def fetch_agent_card(base_url: str, policy: OutboundPolicy) -> dict[str, Any]:
    """Fetch and validate the agent card served under ``base_url`` (waits).

    Tries each of :data:`AGENT_CARD_PATHS` while the agent answers 404. The card is
    validated with the A2A SDK's parser (its current and its older card forms) and
    must fill the fields named in ``_CARD_FIELDS``.

    Returns:
        The card as the agent serves it (JSON).

    Raises:
        CardInvalidError: The agent answered a card that does not validate.
        ProbeError: Refused by the policy, unreachable, too slow, or no card.
    """
    try:
        with anyio.fail_after(policy.deadline):
            await check_destination(base_url, policy)
            async with open_http_client(policy) as http:
                for path in AGENT_CARD_PATHS:
                    response = await http.get(base_url.rstrip("/") + path)
                    if response.status_code != 404:
                        break
    except Exception as exc:
        raise ProbeError(f"no agent card at {base_url}: {exc!r}") from exc
    if response.status_code != 200:
        raise ProbeError(f"no agent card at {base_url}: HTTP {response.status_code}")
    try:
        card = json.loads(response.content)
    except ValueError as exc:
        raise CardInvalidError(f"the agent card is not JSON: {exc}") from exc
    _validate_card(card)
    assert isinstance(card, dict)
    return card


def _validate_card(card: Any) -> None:
    # Imported on first use, as the MCP client is.
    from a2a.client.card_resolver import parse_agent_card
    from google.protobuf.json_format import ParseError

    if not isinstance(card, dict):
        raise CardInvalidError("the agent card is not a JSON object")
    try:
        # The parser moves the older form's fields about in what it is given.
        parsed = parse_agent_card(copy.deepcopy(card))
    except (ParseError, ValueError, TypeError) as exc:
        raise CardInvalidError(f"the agent card does not validate: {exc}") from exc
    missing = [name for name in _CARD_FIELDS if not getattr(parsed, name)]
    if not parsed.HasField("capabilities"):
        missing.append("capabilities")
    if missing:
        raise CardInvalidError(f"the agent card lacks {', '.join(missing)}")


def card_name(card: dict[str, Any]) -> str:
    """Return the card's name as stored: spaces become ``_``."""
    return str(card.get("name") or "").replace(" ", "_")


def stored_card_content(card: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Return what is stored of a card: all but its name, description and URL, null
    fields left out, skill names with ``_`` for spaces."""
    content = {
        key: value
        for key, value in card.items()
        if key not in {"name", "description", "url"} and value is not None
    }
    skills = content.get("skills")
    if isinstance(skills, list):
        content["skills"] = [
            {**skill, "name": str(skill.get("name", "")).replace(" ", "_")}
            if isinstance(skill, dict)
            else skill
            for skill in skills
        ]
    return content


def card_skill_descriptions(content: Any) -> list[str]:
    """Return the descriptions of a stored card's skills."""
    skills = content.get("skills") if isinstance(content, dict) else None
    if not isinstance(skills, list):
        return []
    return [str(skill.get("description") or "") for skill in skills if isinstance(skill, dict)]
