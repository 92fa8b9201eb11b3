"""Pydantic models of the router's frames (PROTOCOL.md §1, §2), both ways, for
``genai-protocol`` 1.0.9 and 2.x clients.

They describe; they do not parse. The router reads frames with its own few dictionary
look-ups (`actors.router.RoutingTable.receive`), which carries the agents' logs at tens
of thousands a second; a test runs both over one corpus of frames and checks that they
agree on what is refused and on each frame's type.

Frames carry keys the router passes along without reading (a 2.x log's ``invoked_by``,
a pydantic result flattened into a response), so the frames clients send allow extra
keys; only ``message_type`` tells them apart. What the router sends has no common
discriminator: each shape is told by its required keys.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, model_validator

from actors.router import ErrorType

__all__ = [
    "AgentErrorIn",
    "AgentErrorOut",
    "AgentInvoke",
    "AgentLog",
    "AgentRegister",
    "AgentResponseIn",
    "AgentResponseOut",
    "BackendLog",
    "BackendRegister",
    "BackendUnregister",
    "ErrorBody",
    "ForwardLog",
    "ForwardRegister",
    "ForwardUnregister",
    "Invocation",
    "RegisterPayload",
    "RequestMetadata",
    "RouterError",
    "RouterFrameIn",
]

_OPEN = ConfigDict(extra="allow")


class RequestMetadata(BaseModel):
    """The caller's ids, passed on to the callee (and by it to its own calls)."""

    model_config = _OPEN

    request_id: str | None = None
    session_id: str | None = None


class ErrorBody(BaseModel):
    """Why a call failed. ``error_type`` names the exception a library client raises."""

    model_config = _OPEN

    error_message: str
    error_type: str | None = Field(
        None, description="One of " + ", ".join(f"`{t}`" for t in ErrorType) + "."
    )
    agent_uuid: str | None = Field(None, description="The agent that went away.")
    message_type: str | None = None


# -- client -> router -------------------------------------------------------------------


class RegisterPayload(BaseModel):
    """An agent's metadata, built by the library's ``bind``."""

    model_config = _OPEN

    agent_name: str = Field(description="1.0.9 without `name=`: the docstring (a bug).")
    agent_description: str
    agent_input_schema: dict[str, Any] = Field(
        description="An OpenAI function tool schema; `function.name` is the agent's uuid "
        "(1.0.9, and 2.x with IS_LOCAL_SETUP) or its name."
    )


class AgentRegister(BaseModel):
    """An agent announces itself, right after connecting. Nothing is sent back."""

    model_config = _OPEN

    message_type: Literal["agent_register"]
    request_payload: RegisterPayload


class AgentInvoke(BaseModel):
    """Call an agent (or, for the back-end, the master ``master_server_ml``).

    Sent on a ``send()`` socket (``x-custom-invoke-key``) or by the back-end. Without
    both ``request_payload`` and ``agent_uuid`` the router answers ``NoRequestPayload``
    then ``AgentNotActive``; an absent target is ``AgentNotActive``. The back-end's key
    may send ``{"error_message", "error_type"}`` as the payload: the agent is then sent
    that error and stops.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "anyOf": [{"required": ["request_payload"]}, {"required": ["agent_uuid"]}]
        },
    )

    message_type: Literal["agent_invoke"]
    agent_uuid: str | None = Field(None, description="The target's client id.")
    request_payload: dict[str, Any] | None = Field(
        None, description="The keyword arguments of the target's function."
    )
    request_metadata: RequestMetadata | None = None

    @model_validator(mode="after")
    def _payload_or_target(self) -> AgentInvoke:
        # The router's NoRequestPayload check (the schema's anyOf says the same).
        if self.request_payload is None and self.agent_uuid is None:
            raise ValueError("request_payload or agent_uuid is required")
        return self


class AgentResponseIn(BaseModel):
    """An agent's answer to an invocation, on its main socket.

    2.0.3 adds ``response_metadata`` (not reliable under concurrent calls). A result
    that is a pydantic model is flattened: its fields are top-level keys and there is
    no ``response``.
    """

    model_config = _OPEN

    message_type: Literal["agent_response"]
    response: Any = None
    execution_time: float | None = Field(None, description="Seconds, measured by the agent.")
    invoked_by: str | None = Field(None, description="Echoed from the invocation.")
    response_metadata: RequestMetadata | None = None


class AgentErrorIn(BaseModel):
    """An agent's failure (its handler raised). A 2.0.2+ agent stops after sending it."""

    model_config = _OPEN

    message_type: Literal["agent_error"]
    error: ErrorBody
    execution_time: float | None = 0
    invoked_by: str | None = None
    response_metadata: RequestMetadata | None = None


class AgentLog(BaseModel):
    """A log line of an agent (1.0.9: sent at once; 2.x: buffered, flushed just before
    the response, with ``invoked_by``). Forwarded to the back-end, never answered."""

    model_config = _OPEN

    message_type: Literal["agent_log"]
    log_message: Any = Field(description="Text; dicts JSON-encoded, bytes decoded.")
    log_level: str
    agent_uuid: str | None = Field(None, description="Replaced by the sender's client id.")
    request_id: str | None = None
    session_id: str | None = None
    invoked_by: str | None = Field(None, description="2.x only.")


class RouterFrameIn(
    RootModel[
        Annotated[
            AgentRegister | AgentInvoke | AgentResponseIn | AgentErrorIn | AgentLog,
            Field(discriminator="message_type"),
        ]
    ]
):
    """Any frame a client sends the router (``agent_unregister`` and ``ml_invoke`` are
    refused as unexpected, like a missing or unknown ``message_type``)."""


# -- router -> client -------------------------------------------------------------------


class Invocation(BaseModel):
    """An invocation, delivered to the target's main socket (no ``message_type``).

    The library calls the bound function with ``request_payload`` as keyword arguments
    and echoes ``invoked_by`` (unique per calling socket, ``<client id>#<n>``) in its
    answer.
    """

    model_config = ConfigDict(extra="forbid")

    request_payload: dict[str, Any] | None = None
    request_metadata: RequestMetadata | None = None
    invoked_by: str


class AgentResponseOut(BaseModel):
    """An answer, forwarded to the socket that invoked (``invoked_by`` removed)."""

    model_config = _OPEN

    message_type: Literal["agent_response"]
    response: Any = None
    execution_time: float | None = None
    response_metadata: RequestMetadata | None = None


class AgentErrorOut(BaseModel):
    """A failed call: the agent's own error, or the router's (``Agent is NOT active``,
    ``Agent has been unregistered``, a refused frame or reply)."""

    model_config = ConfigDict(extra="forbid")

    message_type: Literal["agent_error"]
    error: ErrorBody
    execution_time: float | None = None
    response_metadata: RequestMetadata | None = None


class RouterError(BaseModel):
    """The router's own error (no ``message_type``): ``Invalid JSON format``,
    ``Unexpected exception: <frame>``, ``Missing request payload or agent UUID``; or
    the back-end telling an agent to stop (its token was refused). A library agent
    raises the mapped exception and stops."""

    model_config = ConfigDict(extra="forbid")

    error: ErrorBody


class ForwardRegister(BaseModel):
    """An agent's registration, with its id and token (to the back-end)."""

    model_config = _OPEN

    message_type: Literal["agent_register"]
    agent_uuid: str
    agent_jwt: str | None
    agent_name: str | None = None
    agent_description: str | None = None
    agent_input_schema: dict[str, Any] | None = None


class ForwardUnregister(BaseModel):
    """An agent (or the master) disconnected (to the back-end)."""

    model_config = ConfigDict(extra="forbid")

    message_type: Literal["agent_unregister"]
    agent_uuid: str


class ForwardLog(BaseModel):
    """An agent's log, with the sender's client id (to the back-end)."""

    model_config = _OPEN

    message_type: Literal["agent_log"]
    agent_uuid: str
    log_message: Any = None
    log_level: str | None = None
    request_id: str | None = None
    session_id: str | None = None
    invoked_by: str | None = None


class BackendRegister(BaseModel):
    """Sent to the back-end (``master_server_be``) when an agent registers; also
    replayed to a back-end that (re)connects, for every agent connected then."""

    model_config = ConfigDict(extra="forbid")

    request_payload: ForwardRegister


class BackendUnregister(BaseModel):
    """Sent to the back-end when an agent's or the master's main socket closes."""

    model_config = ConfigDict(extra="forbid")

    request_payload: ForwardUnregister


class BackendLog(BaseModel):
    """Sent to the back-end for each agent log (kept while it is away)."""

    model_config = ConfigDict(extra="forbid")

    request_payload: ForwardLog
