"""Calling a user's A2A agent, with the official ``a2a-sdk`` client, under the outbound
policy of users' URLs.

The client is made from the card stored when the agent was added (and kept fresh by
the refresher), so a call is one request: the model's ``task`` and ``text`` go as one
text message (``"<task>\\n<text>"``, as the upstream master sends them), and the
agent's reply (a message, or a task with its artifacts and status) comes back as text.
The SDK speaks ``httpx``; its client here goes through a transport that applies the
same checks as every other request to a user's URL (destination checked on every
request, bounded answers, no redirect, no proxy from the environment). The caller's
cancel scope owns the call's deadline, so no read time-out of ours cuts a slow agent
short before it.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

import httpx

from actors.tools import open_guarded_client

if TYPE_CHECKING:
    from actors.tools import OutboundPolicy

__all__ = ["A2ACallError", "A2AReply", "a2a_message_text", "call_a2a_agent"]


class A2ACallError(Exception):
    """Raised when the A2A agent cannot be reached or does not answer as A2A."""


@dataclasses.dataclass(frozen=True, slots=True)
class A2AReply:
    """An agent's answer: its text, and whether its task ended well."""

    is_success: bool
    output: str


def a2a_message_text(arguments: dict[str, Any]) -> str:
    """The text sent for the model's arguments: ``"<task>\\n<text>"`` (the trace's input)."""
    task, text = arguments.get("task"), arguments.get("text")
    parts = [str(part) for part in (task, text) if part not in (None, "")]
    return "\n".join(parts)


def _http_client(policy: OutboundPolicy) -> httpx.AsyncClient:
    # No read time-out: an agent may think for as long as the caller's deadline allows.
    client: httpx.AsyncClient = open_guarded_client(policy, http=httpx, read_timeout=None)
    return client


def _agent_card(card: dict[str, Any], url: str) -> Any:
    """Parse a stored card; an older card (its endpoint was its dropped ``url``) is
    reached at the URL it was added with."""
    from a2a.client.card_resolver import parse_agent_card
    from a2a.types.a2a_pb2 import AgentInterface

    parsed = parse_agent_card(copy.deepcopy(card))
    if not parsed.supported_interfaces:
        parsed.supported_interfaces.append(
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3")
        )
    return parsed


def _reply(event: Any) -> A2AReply:
    """Read the agent's answer: a message, or a task (artifacts, else its status)."""
    from a2a.helpers import get_artifact_text, get_message_text
    from a2a.types.a2a_pb2 import TaskState

    if event.HasField("message"):
        return A2AReply(True, get_message_text(event.message))
    task = event.task
    texts = [get_artifact_text(artifact) for artifact in task.artifacts]
    if task.status.HasField("message"):
        status_text = get_message_text(task.status.message)
        if status_text and (not texts or task.status.state != TaskState.TASK_STATE_COMPLETED):
            texts.append(status_text)
    failed = task.status.state in {
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_CANCELED,
    }
    output = "\n".join(text for text in texts if text)
    if failed and not output:
        output = TaskState.Name(task.status.state)
    return A2AReply(not failed, output)


async def call_a2a_agent(
    url: str, card: dict[str, Any], arguments: dict[str, Any], policy: OutboundPolicy
) -> A2AReply:
    """Send the model's ``task`` and ``text`` to the agent ``card`` describes (waits; no
    deadline of its own).

    Args:
        url: The URL the agent was added with (its card's base).
        card: The agent's card as stored, with its name and description.
        arguments: The model's arguments (``task``, ``text``).
        policy: The outbound policy of users' URLs.

    Raises:
        A2ACallError: Refused by the policy, unreachable, an error answer, or not A2A.
    """
    # Imported on first use: the SDK is slow to import and most turns never need it.
    from a2a.client import ClientConfig, ClientFactory
    from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest

    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=[Part(text=a2a_message_text(arguments))],
    )
    reply: A2AReply | None = None
    try:
        async with _http_client(policy) as http:
            # Not streaming: one request, one answer, as the upstream master asks.
            factory = ClientFactory(ClientConfig(httpx_client=http, streaming=False))
            client = factory.create(_agent_card(card, url))
            try:
                async for event in client.send_message(SendMessageRequest(message=message)):
                    reply = _reply(event)
            finally:
                await client.close()
    except Exception as exc:
        # The SDK's errors, httpx's, the policy's, a card that no longer parses: the
        # user's remedy is the same.
        raise A2ACallError(f"A2A agent {url}: {exc!r}") from exc
    if reply is None:
        raise A2ACallError(f"A2A agent {url} answered nothing")
    return reply
