"""Users' tool sources: MCP servers and A2A agents, probed safely and refreshed."""

from __future__ import annotations

from ._outbound import OutboundPolicy as OutboundPolicy
from ._outbound import OutboundRefusedError as OutboundRefusedError
from ._outbound import ResponseTooLargeError as ResponseTooLargeError
from ._outbound import check_destination as check_destination
from ._outbound import open_guarded_client as open_guarded_client
from ._outbound import open_http_client as open_http_client
from ._probe import AGENT_CARD_PATHS as AGENT_CARD_PATHS
from ._probe import CardInvalidError as CardInvalidError
from ._probe import ProbeError as ProbeError
from ._probe import ToolInfo as ToolInfo
from ._probe import card_name as card_name
from ._probe import card_skill_descriptions as card_skill_descriptions
from ._probe import fetch_agent_card as fetch_agent_card
from ._probe import list_mcp_tools as list_mcp_tools
from ._probe import stored_card_content as stored_card_content
from ._refresh import GetRefreshStatistics as GetRefreshStatistics
from ._refresh import RefreshNow as RefreshNow
from ._refresh import RefreshStatistics as RefreshStatistics
from ._refresh import ToolRefresher as ToolRefresher
from ._refresh import ToolRefresherClient as ToolRefresherClient
from ._refresh import new_tools as new_tools
from ._refresh import tool_refresher_spec as tool_refresher_spec

__all__ = [
    "AGENT_CARD_PATHS",
    "CardInvalidError",
    "GetRefreshStatistics",
    "OutboundPolicy",
    "OutboundRefusedError",
    "ProbeError",
    "RefreshNow",
    "RefreshStatistics",
    "ResponseTooLargeError",
    "ToolInfo",
    "ToolRefresher",
    "ToolRefresherClient",
    "card_name",
    "card_skill_descriptions",
    "check_destination",
    "fetch_agent_card",
    "list_mcp_tools",
    "new_tools",
    "open_guarded_client",
    "open_http_client",
    "stored_card_content",
    "tool_refresher_spec",
]
