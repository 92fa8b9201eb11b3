"""Pydantic models of what crosses ``/frontend/ws`` besides the chat message itself.

The chat message is `web.blueprints.ws.IncomingMessage`, the model the socket validates
with; everything else the socket reads or writes is described here (ENDPOINTS.md §9 and
the chat-turn contract). The frames out are built by hand elsewhere, for speed
(`actors.chat.agent_response_frame`, `actors.fanout.log_frame`): these models are
their description, checked against real traffic by the tests, not their writers.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, RootModel

__all__ = [
    "AcceptedData",
    "AgentData",
    "AgentFailedData",
    "AgentLogData",
    "AgentLogFrame",
    "AgentResponseFrame",
    "CancelMessage",
    "ErrorFrame",
    "FileDTO",
    "FinalData",
    "FrontendQuery",
    "LateReplyData",
    "LogBody",
    "MasterInvokedData",
    "ReplyObject",
    "ResponseBody",
    "TurnEventFrame",
    "ValidationDetail",
]

_STRICT = ConfigDict(extra="forbid")


class FrontendQuery(BaseModel):
    """The query parameters of the handshake.

    A bad ``token`` closes the socket with 1008 before it is accepted (a browser sees
    HTTP 403); a bad ``session_id``, ``events`` or ``after_seq`` closes it with 1008 and
    a reason.
    """

    model_config = _STRICT

    token: str = Field(description="A user's access token (from /api/login/access-token).")
    session_id: UUID | None = Field(
        None, description="The conversation to join; a new one (uuid4) when absent."
    )
    events: Literal["0", "1"] | None = Field(
        None, description="`1` opts in to `turn_event` frames; without it frames are as before."
    )
    after_seq: Annotated[int, Field(ge=0)] | None = Field(
        None,
        description="Replay every event of the conversation with a greater `seq`, then go "
        "live (implies `events=1`).",
    )


class CancelMessage(BaseModel):
    """Cancel a running or queued turn of this socket's session (the socket validates
    cancels with this model).

    The turn is then answered once, with an ``agent_response`` whose ``is_success`` is
    false and whose text is ``Turn cancelled``. A turn that is not this user's, not in
    this session or unknown gets the error frame ``Turn not found``; a finished one
    ``Turn is already finished``.
    """

    model_config = ConfigDict(extra="ignore")

    type: Literal["cancel"]
    request_id: UUID = Field(description="The turn to cancel.")


class FileDTO(BaseModel):
    """A file of the turn: the user's attachments and the files agents saved."""

    model_config = _STRICT

    id: UUID
    session_id: UUID | None
    request_id: UUID | None
    original_name: str
    mimetype: str
    internal_id: UUID
    internal_name: str
    from_agent: bool
    creator_id: UUID | None


class ReplyObject(BaseModel):
    """What the master answered: its text, the trace of its calls and the outcome.

    A failed turn (master absent, failing, late; a refused message) answers
    ``{"response": "<what to do>", "agents_trace": [], "is_success": false}``. An
    external master may add keys of its own.
    """

    model_config = ConfigDict(extra="allow")

    response: Any = Field(description="The answer's text (an external master may send JSON).")
    agents_trace: list[dict[str, Any]] = Field(
        description="One step per supervisor step and per agent, flow, MCP or A2A call."
    )
    is_success: bool


class ResponseBody(BaseModel):
    """The body of an ``agent_response`` frame."""

    model_config = _STRICT

    execution_time: float = Field(description="Seconds; 0.0 for a failed turn, never null.")
    response: ReplyObject
    request_id: UUID = Field(description="The turn (a fresh one for a refused message).")
    session_id: UUID
    files: list[FileDTO]


class AgentResponseFrame(BaseModel):
    """The one answer to each chat message (and to a cancelled turn)."""

    model_config = _STRICT

    type: Literal["agent_response"]
    response: ResponseBody


class LogBody(BaseModel):
    """One stored agent log (secrets masked)."""

    model_config = _STRICT

    session_id: UUID
    request_id: UUID
    log_level: str
    message: str = Field(description="The log's text; the master's own logs are JSON text.")
    creator_id: UUID | None = Field(description="The user who owns the log.")
    agent_id: str | None = Field(description="The agent's id, or `master_server_ml`.")
    created_at: str = Field(description="Naive UTC ISO-8601.")
    updated_at: str = Field(description="Naive UTC ISO-8601.")


class AgentLogFrame(BaseModel):
    """An agent log of one of the user's turns; may come before or after the reply."""

    model_config = _STRICT

    type: Literal["agent_log"]
    log: LogBody


class ValidationDetail(BaseModel):
    """One pydantic error of an invalid frame (no ``url``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None


class ErrorFrame(BaseModel):
    """A frame that is not a message, or a cancel that cannot be done.

    Texts: ``Message validation failed`` (with ``details``), ``Message must not contain
    NUL characters or invalid Unicode``, ``Too many open sockets`` (then closed 1013),
    ``Turn not found``, ``Turn is already finished``.
    """

    model_config = _STRICT

    type: Literal["error"]
    error: str
    details: list[ValidationDetail] | None = None


# -- turn events ----------------------------------------------------------------------


class AcceptedData(BaseModel):
    """The message was taken (``queued``: behind a running turn)."""

    model_config = _STRICT

    message: str
    llm_name: str
    provider: str | None
    files: list[UUID]
    queued: bool


class EmptyData(BaseModel):
    """No data."""

    model_config = _STRICT


class MasterInvokedData(BaseModel):
    """Which master answers the turn."""

    model_config = _STRICT

    master: Literal["builtin", "external"]


class AgentData(BaseModel):
    """An agent the turn called, as the router saw it."""

    model_config = _STRICT

    agent_id: str
    agent_name: str | None


class AgentFailedData(AgentData):
    """An agent call of the turn that failed."""

    error: str


class AgentLogData(BaseModel):
    """A log of the turn."""

    model_config = _STRICT

    agent_id: str | None
    log_type: str
    message: str


class FinalData(BaseModel):
    """The end of the turn: the reply frame exactly as sent on the socket."""

    model_config = _STRICT

    reply: AgentResponseFrame


class LateReplyData(BaseModel):
    """An external master's answer that came after the turn was cancelled (not sent)."""

    model_config = _STRICT

    response: dict[str, Any]


class _Event(BaseModel):
    model_config = _STRICT

    type: Literal["turn_event"]
    session_id: UUID
    request_id: UUID
    seq: int = Field(ge=1, description="Per conversation, from 1, gap-free, increasing.")
    at: str = Field(description="Naive UTC ISO-8601.")


class AcceptedEvent(_Event):
    """``accepted``: the message was taken."""

    kind: Literal["accepted"]
    data: AcceptedData


class StartedEvent(_Event):
    """``started``: the turn began to run."""

    kind: Literal["started"]
    data: EmptyData


class MasterInvokedEvent(_Event):
    """``master_invoked``: the master was called."""

    kind: Literal["master_invoked"]
    data: MasterInvokedData


class AgentEvent(_Event):
    """``agent_invoked`` / ``agent_answered``: an agent call of the turn."""

    kind: Literal["agent_invoked", "agent_answered"]
    data: AgentData


class AgentFailedEvent(_Event):
    """``agent_failed``: an agent call of the turn failed."""

    kind: Literal["agent_failed"]
    data: AgentFailedData


class AgentLogEvent(_Event):
    """``agent_log``: a log of the turn."""

    kind: Literal["agent_log"]
    data: AgentLogData


class FinalEvent(_Event):
    """The final event, one per turn."""

    kind: Literal["answered", "failed", "cancelled", "interrupted"]
    data: FinalData


class LateReplyEvent(_Event):
    """``late_reply``: an answer after the turn was cancelled, stored, not sent."""

    kind: Literal["late_reply"]
    data: LateReplyData


class TurnEventFrame(
    RootModel[
        Annotated[
            AcceptedEvent
            | StartedEvent
            | MasterInvokedEvent
            | AgentEvent
            | AgentFailedEvent
            | AgentLogEvent
            | FinalEvent
            | LateReplyEvent,
            Field(discriminator="kind"),
        ]
    ]
):
    """One event of a turn, to sockets that opted in (``events=1`` or ``after_seq``)."""
