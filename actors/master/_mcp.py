"""Calling a tool of a user's MCP server, under the outbound policy of users' URLs.

One connection per call, as the upstream master makes it (streamable HTTP, or SSE for a
URL whose path ends in ``/sse``), through the policy's guarded HTTP client (no private
addresses in production, bounded answers, no cross-origin redirect); the caller's
cancel scope owns the deadline. The tool's answer goes back to the model as its
structured content when it has one, otherwise as the text of its content.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from actors.tools import check_destination, open_http_client

if TYPE_CHECKING:
    from actors.tools import OutboundPolicy

__all__ = ["McpCallError", "McpReply", "call_mcp_tool"]


class McpCallError(Exception):
    """Raised when the MCP server cannot be reached or does not answer as MCP."""


@dataclasses.dataclass(frozen=True, slots=True)
class McpReply:
    """A tool's answer: its output and whether the tool reported success."""

    is_success: bool
    output: Any


async def call_mcp_tool(
    url: str, name: str, arguments: dict[str, Any], policy: OutboundPolicy
) -> McpReply:
    """Call the tool ``name`` of the MCP server at ``url`` (waits; no deadline of its own).

    Raises:
        McpCallError: Refused by the policy, unreachable, or not MCP.
    """
    # Imported on first use: the SDK takes about a second to import (see actors.tools).
    from mcp import Client
    from mcp.client.sse import sse_client
    from mcp.client.streamable_http import streamable_http_client

    try:
        await check_destination(url, policy)
        async with open_http_client(policy) as http:
            if urlsplit(url).path.rstrip("/").endswith("/sse"):
                transport: Any = sse_client(
                    url,
                    timeout=policy.connect_timeout,
                    sse_read_timeout=policy.read_timeout,
                    httpx_client_factory=lambda *_args, **_kw: open_http_client(policy),
                )
            else:
                transport = streamable_http_client(url, http_client=http)
            async with Client(transport, cache=None) as client:
                result = await client.call_tool(name, arguments)
    except Exception as exc:
        # ExceptionGroups of the client's task groups too: every failure means the same.
        raise McpCallError(f"MCP server {url}: {exc!r}") from exc
    if result.structured_content is not None:
        output: Any = result.structured_content
    else:
        texts = [getattr(item, "text", None) for item in result.content]
        if all(isinstance(text, str) for text in texts):
            output = "\n".join(text for text in texts if text is not None)
        else:
            output = [item.model_dump(mode="json", exclude_none=True) for item in result.content]
    return McpReply(not result.is_error, output)
