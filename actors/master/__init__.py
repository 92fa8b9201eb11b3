"""The built-in master agent: answers chat turns with the user's model and agents.

A client of the router as ``master_server_ml`` (in-process on the embedded router, as
the router session is), speaking the upstream master's contract (PROTOCOL.md §3): it
reads the conversation and the user's tools (eligible flows, active genai agents,
tools of active MCP servers, active A2A agents) straight from the database, runs a
tool-calling loop with the user's model (OpenAI, Azure OpenAI, Ollama or any
OpenAI-compatible server, through the official ``openai`` client), calls genai agents
through the router under the turn's ids, MCP tools with the ``mcp`` client and A2A
agents with the ``a2a-sdk`` client, and answers
``{agents_trace, response, is_success}``. Every failure is an answer with
``is_success: false`` and a text the user can act on. Place it with `master_agent_spec`.
"""

from __future__ import annotations

from ._actor import CancelMasterTurn as CancelMasterTurn
from ._actor import GetMasterStatus as GetMasterStatus
from ._actor import MasterAgent as MasterAgent
from ._actor import MasterConfig as MasterConfig
from ._actor import MasterMessage as MasterMessage
from ._actor import MasterStatus as MasterStatus
from ._actor import master_agent_spec as master_agent_spec
from ._agents import AgentReply as AgentReply
from ._agents import call_agent as call_agent
from ._exceptions import AgentCallError as AgentCallError
from ._exceptions import ProviderError as ProviderError
from ._exceptions import StepLimitError as StepLimitError
from ._exceptions import ToolCallError as ToolCallError
from ._exceptions import TurnError as TurnError
from ._loop import LoopSettings as LoopSettings
from ._loop import TurnRequest as TurnRequest
from ._loop import TurnRunner as TurnRunner
from ._providers import ModelSettings as ModelSettings
from ._providers import ProviderPool as ProviderPool
from ._providers import model_settings as model_settings
from ._tools import Tool as Tool
from ._tools import ToolCatalogue as ToolCatalogue

__all__ = [
    "AgentCallError",
    "AgentReply",
    "CancelMasterTurn",
    "GetMasterStatus",
    "LoopSettings",
    "MasterAgent",
    "MasterConfig",
    "MasterMessage",
    "MasterStatus",
    "ModelSettings",
    "ProviderError",
    "ProviderPool",
    "StepLimitError",
    "Tool",
    "ToolCallError",
    "ToolCatalogue",
    "TurnError",
    "TurnRequest",
    "TurnRunner",
    "call_agent",
    "master_agent_spec",
    "model_settings",
]
