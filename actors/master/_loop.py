"""One master turn: the tool-calling loop between the user's model and their agents.

The model is shown the conversation and the user's tools (flows, agents, MCP tools and
A2A agents, by alias); each step either answers in text, which ends the turn, or calls
tools: a genai agent is invoked through the router under the turn's ids, an MCP tool or
an A2A agent over HTTP under the outbound policy of users' URLs, a flow runs its members
in order (the first with the model's arguments, each next one with arguments the model
is made to give for it, having seen what came before), and every result goes back to
the model.
Each model call and each agent call is a step with its own deadline; past
``max_steps`` model calls the turn stops.

Every step is recorded in ``agents_trace`` in the shape the web UI's trace page reads
(PROTOCOL.md §3.5): ``MasterAgent`` steps with the model's message, agent calls with
``id``, ``name``, ``type``, ``input``, ``output``, ``is_success`` and
``execution_time``, flows with their members' traces under ``flow``. Any failure ends
the turn with ``is_success`` false and a text saying what to do, after the steps so far.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from persistence import ChatTurnStore, is_database_unavailable

from ..session import RouterConnectionError
from ..tools import OutboundPolicy
from ._a2a import A2ACallError, a2a_message_text, call_a2a_agent
from ._agents import call_agent
from ._exceptions import AgentCallError, StepLimitError, ToolCallError, TurnError
from ._history import last_messages, model_messages, read_history
from ._mcp import McpCallError, call_mcp_tool
from ._providers import model_settings
from ._tools import A2A, FLOW, MCP

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from ..session import Connector
    from ._providers import ModelSettings, ProviderPool
    from ._tools import Tool, ToolCatalogue

__all__ = ["DATABASE_UNAVAILABLE", "LoopSettings", "TurnRequest", "TurnRunner"]

logger = logging.getLogger(__name__)

MASTER = "MasterAgent"
DATABASE_UNAVAILABLE = "Database unavailable. Try again later"
_NOT_ACTIVE = "Agent is NOT active"
_UNREGISTERED = "Agent has been unregistered"


@dataclasses.dataclass(frozen=True, slots=True)
class TurnRequest:
    """What the master was invoked with (PROTOCOL.md §3.2) and the turn's ids."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    request_id: str
    configs: Mapping[str, Any]
    files: list[Any]


@dataclasses.dataclass(frozen=True, slots=True)
class LoopSettings:
    """The loop's limits.

    Attributes:
        default_prompt: The system prompt of a config that has none (API.md App. A).
        model_timeout: Seconds one model call may take.
        agent_timeout: Seconds one agent call may take.
        max_steps: Model calls per turn (a flow's forced calls included).
    """

    default_prompt: str
    model_timeout: float = 60.0
    agent_timeout: float = 120.0
    max_steps: int = 10


class TurnRunner:
    """Run turns; shared by every turn of the master (it keeps no turn state).

    Args:
        sessionmaker: Reads the history.
        tools: The users' tools.
        providers: Pooled provider clients.
        connector: Opens router connections for agent calls.
        master_key: ``MASTER_AGENT_API_KEY``, the prefix of the calls' invoke keys.
        settings: Limits and the default prompt.
        outbound: The policy of requests to users' URLs (MCP servers); default: the
            policy's own defaults.
    """

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        tools: ToolCatalogue,
        providers: ProviderPool,
        connector: Connector,
        master_key: str,
        settings: LoopSettings,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.store = ChatTurnStore(sessionmaker)
        self.tools = tools
        self.providers = providers
        self.connector = connector
        self.master_key = master_key
        self.settings = settings
        self.outbound = outbound or OutboundPolicy()

    async def run(self, request: TurnRequest) -> dict[str, Any]:
        """Run one turn; return ``{agents_trace, response, is_success}``.

        Never raises for what the user or the outside did wrong (a bad key, a provider
        or an agent down, a late step, a database outage): those answer
        ``is_success: false``; only a bug raises.
        """
        trace: list[dict[str, Any]] = []
        try:
            text = await _Turn(self, request, trace).run()
        except TurnError as exc:
            logger.info("master turn failed: %s", exc)
            return _failure(trace, str(exc))
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            logger.warning("database unavailable during a master turn: %r", exc)
            return _failure(trace, DATABASE_UNAVAILABLE)
        return {"agents_trace": trace, "response": text, "is_success": True}


def _failure(trace: list[dict[str, Any]], text: str) -> dict[str, Any]:
    trace.append({"name": MASTER, "output": text, "is_success": False})
    return {"agents_trace": trace, "response": text, "is_success": False}


class _Turn:
    """The state of one turn: its model, messages, tools, trace and steps."""

    def __init__(
        self, runner: TurnRunner, request: TurnRequest, trace: list[dict[str, Any]]
    ) -> None:
        self.runner = runner
        self.request = request
        self.trace = trace
        self.steps = 0

    async def run(self) -> str:
        runner, request = self.runner, self.request
        model = model_settings(request.configs)
        history = await read_history(
            runner.store,
            request.session_id,
            request.user_id,
            last_messages(request.configs),
        )
        tools = await runner.tools.tools_for(request.user_id)
        prompt = model.system_prompt or runner.settings.default_prompt
        if model.user_prompt:
            prompt = f"{prompt}\n\n{model.user_prompt}"
        messages = model_messages(history, system_prompt=prompt, files=request.files)
        by_name = {tool.function_name: tool for tool in tools}
        definitions = [tool.function for tool in tools]
        while True:
            message = await self.think(model, messages, definitions, self.trace)
            calls = _tool_calls(message)
            if not calls:
                content = message.get("content")
                return content if isinstance(content, str) else ""
            before = list(messages)
            messages.append({"role": "assistant", "content": None, "tool_calls": calls})
            for call in calls:
                tool, arguments = _read_call(call, by_name, model)
                output = await self.use(model, tool, arguments, before)
                messages.append(
                    {"role": "tool", "tool_call_id": call.get("id"), "content": _as_text(output)}
                )

    async def think(
        self,
        model: ModelSettings,
        messages: list[dict[str, Any]],
        definitions: list[dict[str, Any]],
        trace: list[dict[str, Any]],
        *,
        tool_choice: Any = None,
    ) -> dict[str, Any]:
        """Make one model call, recorded as a ``MasterAgent`` step."""
        limit = self.runner.settings.max_steps
        if self.steps >= limit:
            raise StepLimitError(
                f"No final answer after {limit} steps of the model {model.model}: ask "
                "again with a narrower request."
            )
        self.steps += 1
        started = time.perf_counter()
        completion = await self.runner.providers.complete(
            model,
            messages,
            definitions,
            timeout=self.runner.settings.model_timeout,
            tool_choice=tool_choice,
        )
        message = completion.message
        output = {k: v for k, v in message.items() if v is not None}
        if completion.usage is not None:
            output["usage_metadata"] = completion.usage
        trace.append(
            {
                "name": MASTER,
                "input": messages[-1],
                "output": output,
                "is_success": True,
                "execution_time": time.perf_counter() - started,
            }
        )
        return message

    async def use(
        self,
        model: ModelSettings,
        tool: Tool,
        arguments: dict[str, Any],
        before: list[dict[str, Any]],
    ) -> Any:
        """Call an agent or run a flow; return what goes back to the model."""
        if tool.kind != FLOW:
            return await self.call(tool, arguments, self.trace)
        started = time.perf_counter()
        members: list[dict[str, Any]] = []
        entry: dict[str, Any] = {
            "id": tool.id,
            "name": tool.display_name,
            "type": FLOW,
            "input": arguments,
            "flow": members,
            "is_success": False,
            "execution_time": 0.0,
        }
        self.trace.append(entry)
        nested = list(before)
        output: Any = None
        try:
            for index, member in enumerate(tool.members):
                if index:
                    message = await self.think(
                        model,
                        nested,
                        [member.function],
                        members,
                        tool_choice={
                            "type": "function",
                            "function": {"name": member.function_name},
                        },
                    )
                    arguments = _forced_arguments(message, member, model)
                output = await self.call(member, arguments, members)
                call_id = f"call_{uuid.uuid4().hex[:24]}"
                nested += [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": call_id,
                                "type": "function",
                                "function": {
                                    "name": member.function_name,
                                    "arguments": json.dumps(arguments),
                                },
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": call_id, "content": _as_text(output)},
                ]
            entry["is_success"] = True
            entry["output"] = output
            return output
        finally:
            entry["execution_time"] = time.perf_counter() - started

    async def call(self, tool: Tool, arguments: dict[str, Any], trace: list[dict[str, Any]]) -> Any:
        """Call one agent (under the turn's ids), MCP tool or A2A agent, recorded in
        ``trace``."""
        timeout = self.runner.settings.agent_timeout
        started = time.perf_counter()
        outcome: tuple[Any, float | None, str | None] | None = None
        with anyio.move_on_after(timeout):
            if tool.kind == MCP:
                outcome = await self._mcp(tool, arguments)
            elif tool.kind == A2A:
                outcome = await self._a2a(tool, arguments)
            else:
                outcome = await self._agent(tool, arguments)
        if outcome is None:
            what = "tool" if tool.kind == MCP else "agent"
            failure: str | None = (
                f"The {what} {tool.display_name} did not answer within {timeout:g} s: check "
                "that it is running, then ask again."
            )
            outcome = (failure, None, failure)
        output, seconds, failure = outcome
        entry: dict[str, Any] = {
            "id": tool.id,
            "name": tool.display_name,
            "type": tool.kind,
            # An A2A agent is sent one text, which the trace shows (PROTOCOL.md §3.5).
            "input": a2a_message_text(arguments) if tool.kind == A2A else arguments,
            "output": output,
            "execution_time": seconds if seconds else time.perf_counter() - started,
            "is_success": failure is None,
        }
        if tool.url is not None:
            entry["url"] = tool.url if tool.kind != A2A else tool.url.rstrip("/") + "/"
        trace.append(entry)
        if failure is not None:
            raise AgentCallError(failure)
        return output

    async def _agent(
        self, tool: Tool, arguments: dict[str, Any]
    ) -> tuple[Any, float | None, str | None]:
        """Invoke a genai agent through the router: its output, time, and failure text."""
        try:
            reply = await call_agent(
                self.runner.connector,
                self.runner.master_key,
                tool.id,
                arguments,
                request_id=self.request.request_id,
                session_id=str(self.request.session_id),
            )
        except RouterConnectionError as exc:
            logger.warning("agent call to %s failed: %r", tool.id, exc)
            failure = (
                f"The agent router cannot be reached, so the agent {tool.display_name} was "
                "not called: try again in a moment."
            )
            return failure, None, failure
        if not reply.is_success:
            return reply.output, reply.execution_time, _agent_failure(tool, str(reply.output))
        return reply.output, reply.execution_time, None

    async def _mcp(
        self, tool: Tool, arguments: dict[str, Any]
    ) -> tuple[Any, float | None, str | None]:
        """Call a tool of an MCP server: its output, and its failure text."""
        assert tool.url is not None and tool.remote_name is not None
        try:
            reply = await call_mcp_tool(tool.url, tool.remote_name, arguments, self.runner.outbound)
        except McpCallError as exc:
            logger.warning("MCP tool call failed: %s", exc)
            failure = (
                f"The MCP server of {tool.display_name} ({tool.url}) cannot be reached or "
                "did not answer as MCP: check that it is running, then ask again."
            )
            return failure, None, failure
        if not reply.is_success:
            return reply.output, None, f"The tool {tool.display_name} failed: {reply.output}"
        return reply.output, None, None

    async def _a2a(
        self, tool: Tool, arguments: dict[str, Any]
    ) -> tuple[Any, float | None, str | None]:
        """Send a message to an A2A agent: its reply's text, and its failure text."""
        assert tool.url is not None and tool.card is not None
        try:
            reply = await call_a2a_agent(tool.url, tool.card, arguments, self.runner.outbound)
        except A2ACallError as exc:
            logger.warning("A2A agent call failed: %s", exc)
            failure = (
                f"The A2A agent {tool.display_name} ({tool.url}) cannot be reached or did "
                "not answer as A2A: check that it is running, then ask again."
            )
            return failure, None, failure
        if not reply.is_success:
            return reply.output, None, f"The agent {tool.display_name} failed: {reply.output}"
        return reply.output, None, None


def _agent_failure(tool: Tool, error: str) -> str:
    name = tool.display_name
    if error == _NOT_ACTIVE:
        return f"The agent {name} is not connected: start it, then ask again."
    if error == _UNREGISTERED:
        return f"The agent {name} disconnected during the call: restart it, then ask again."
    return f"The agent {name} failed: {error}"


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool calls of the model's message (any that is not an object is left out)."""
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [call for call in calls if isinstance(call, dict)]


def _function_of(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function")
    return function if isinstance(function, dict) else {}


def _read_call(
    call: dict[str, Any], by_name: dict[str, Tool], model: ModelSettings
) -> tuple[Tool, dict[str, Any]]:
    """Find the tool a call names and read its arguments."""
    function = _function_of(call)
    name = function.get("name")
    tool = by_name.get(name) if isinstance(name, str) else None
    if tool is None:
        raise ToolCallError(
            f"The model {model.model} called a tool that does not exist ({name!r}): ask "
            "again, or check that the agent you mean is connected."
        )
    return tool, _arguments(function.get("arguments"), tool, model)


def _forced_arguments(
    message: dict[str, Any], member: Tool, model: ModelSettings
) -> dict[str, Any]:
    for call in _tool_calls(message):
        function = _function_of(call)
        if function.get("name") == member.function_name:
            return _arguments(function.get("arguments"), member, model)
    raise ToolCallError(
        f"The model {model.model} did not give arguments for {member.display_name}, the "
        "next agent of the flow: ask again, or use a model that supports tool calling."
    )


def _arguments(text: Any, tool: Tool, model: ModelSettings) -> dict[str, Any]:
    try:
        # Some compatible servers send the arguments as an object rather than its text.
        arguments = text if isinstance(text, dict) else json.loads(text) if text else {}
    except (TypeError, ValueError):
        arguments = None
    if not isinstance(arguments, dict):
        raise ToolCallError(
            f"The model {model.model} called {tool.display_name} with arguments that are "
            f"not a JSON object ({str(text)[:200]!r}): ask again, or use a model that "
            "supports tool calling."
        )
    return arguments


def _as_text(output: Any) -> str:
    return json.dumps(output, ensure_ascii=False, default=str)
