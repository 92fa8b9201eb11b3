"""Calling a genai agent through the router, as the library's ``send()`` does.

Each call opens a short-lived connection whose ``x-custom-invoke-key`` starts with the
master's key and is unique per call (two calls to one agent never share a socket), sends
one ``agent_invoke`` carrying the turn's ``request_id`` and ``session_id`` (the agent
logs under them, so its logs land under the request), and reads until the reply: an
``agent_response``, or an ``agent_error`` (the agent failed, is not connected, or went
away during the call) (PROTOCOL.md §2.6, §5 steps 4 to 7).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from ..session import Connector

__all__ = ["AgentReply", "call_agent"]

_CLOSE_GRACE = 1.0
# Keys of a reply frame that are the envelope, not the answer (a pydantic result of a
# library agent is flattened into the frame, with no ``response`` key).
_ENVELOPE = frozenset(
    {"message_type", "execution_time", "invoked_by", "response_metadata", "request_metadata"}
)


@dataclasses.dataclass(frozen=True, slots=True)
class AgentReply:
    """An agent's answer: its output (or error text) and whether it succeeded."""

    is_success: bool
    output: Any
    execution_time: float


async def call_agent(
    connector: Connector,
    master_key: str,
    agent_id: str,
    arguments: dict[str, Any],
    *,
    request_id: str,
    session_id: str,
) -> AgentReply:
    """Invoke one agent and wait for its reply (the caller's scope owns the deadline).

    An error the agent or the router answers (not connected, failed, unregistered) is
    a reply with ``is_success`` false and the error's text as output.

    Raises:
        actors.session.RouterConnectionError: The router cannot be reached or dropped
            the connection.
    """
    started = time.perf_counter()
    frame = {
        "message_type": "agent_invoke",
        "agent_uuid": agent_id,
        "request_payload": dict(arguments),
        "request_metadata": {"request_id": request_id, "session_id": session_id},
    }
    key = f"{master_key}:{uuid.uuid4().hex}:{agent_id}"
    conn = await connector.connect({"x-custom-invoke-key": key})
    try:
        await conn.send(frame)
        while True:
            reply = _reply(await conn.recv(), started)
            if reply is not None:
                return reply
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
            await conn.aclose()


def _reply(frame: dict[str, Any], started: float) -> AgentReply | None:
    """Read one frame on the call's socket: the reply, or None for anything else."""
    kind = frame.get("message_type")
    error = frame.get("error")
    if kind == "agent_response":
        if "response" in frame:
            output = frame["response"]
        else:
            output = {k: v for k, v in frame.items() if k not in _ENVELOPE}
        return AgentReply(True, output, _seconds(frame.get("execution_time"), started))
    if kind == "agent_error" or isinstance(error, dict):
        # The router's refusals may come without a message_type; the library would
        # wait for ever on them, we report them.
        details = error if isinstance(error, dict) else {}
        text = details.get("error_message") or "the agent failed"
        return AgentReply(False, str(text), _seconds(frame.get("execution_time"), started))
    return None


def _seconds(value: Any, started: float) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    return seconds or time.perf_counter() - started
