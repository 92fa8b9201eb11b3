"""The AsyncAPI 3.0 document of the two WebSockets, built from the pydantic models.

Every payload schema is the model's ``model_json_schema``; the document only arranges
them into channels, messages and operations (from the server's side: ``receive`` is
what a client sends, ``send`` what the server sends) and adds what a schema cannot say:
query parameters as the ``ws`` binding's ``query``, close codes as ``x-close-codes``.

Schemas are AsyncAPI Schema objects (a superset of JSON Schema draft 07): pydantic's
OpenAPI-style ``discriminator`` objects become the property name AsyncAPI expects.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic.json_schema import models_json_schema

from . import _examples as ex
from ._frontend import (
    AgentLogFrame,
    AgentResponseFrame,
    CancelMessage,
    ErrorFrame,
    FrontendQuery,
    TurnEventFrame,
)
from ._router import (
    AgentErrorIn,
    AgentErrorOut,
    AgentInvoke,
    AgentLog,
    AgentRegister,
    AgentResponseIn,
    AgentResponseOut,
    BackendLog,
    BackendRegister,
    BackendUnregister,
    Invocation,
    RouterError,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["ASYNCAPI_VERSION", "Action", "asyncapi_document", "payload_schema"]

ASYNCAPI_VERSION = "3.0.0"
_REF = "#/components/schemas/{model}"

Action = Literal["send", "receive"]


@dataclass(frozen=True, slots=True)
class _Message:
    name: str
    model: type[BaseModel]
    title: str
    summary: str
    examples: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Channel:
    key: str
    address: str
    server: str
    title: str
    description: str
    receive: list[_Message]
    send: list[_Message]
    bindings: dict[str, Any]
    close_codes: list[dict[str, Any]]


_FRONTEND_CLOSE_CODES = [
    {
        "code": 1001,
        "reason": "Server is shutting down",
        "when": "the server stops, after the frames already queued",
    },
    {
        "code": 1008,
        "reason": "JWT token is expired or invalid / session_id is not a valid "
        "UUID / a bad events or after_seq",
        "when": "a bad token (before accepting: a browser sees HTTP 403) or a bad query parameter",
    },
    {"code": 1011, "reason": "Internal error", "when": "an unexpected failure"},
    {
        "code": 1013,
        "reason": "Server is shutting down / Too many open sockets / Too many "
        "connections. Try again later / Too many frames waiting. Reconnect",
        "when": "try "
        "again later: stopping at accept, too many sockets of the user, too many handshakes, "
        "a client too slow to read its frames",
    },
]

_ROUTER_CLOSE_CODES = [
    {
        "code": 4000,
        "reason": "Missing Authorization header",
        "when": "no identity in the handshake headers, or one the router refuses",
    },
    {
        "code": 4001,
        "reason": "Invalid agent token",
        "when": "after the error frame an agent stops on (its token was refused)",
    },
    {
        "code": 1013,
        "reason": "Outbox overflow / Router busy, try again later",
        "when": "the "
        "peer does not read its frames, or the router is too busy to open the connection",
    },
    {"code": 1009, "reason": "", "when": "a frame over four times the 1 MiB frame limit"},
    {"code": 1001, "reason": "Router stopping", "when": "the router stops"},
]

_ROUTER_HEADERS = {
    "type": "object",
    "description": "The first of these present names the client.",
    "properties": {
        "API-KEY": {
            "type": "string",
            "description": "The back-end's key "
            "(`master_server_be`) or the master agent's (`master_server_ml`); "
            "1.0.9 sessions built with `api_key=`.",
        },
        "X-Custom-Authorization": {
            "type": "string",
            "description": "An agent's JWT (no `Bearer`); its `sub` is the agent's id.",
        },
        "x-custom-invoke-key": {
            "type": "string",
            "description": "`<caller id>:<target id>`: a library `send()` socket, one per call.",
        },
    },
}


def _incoming_message() -> type[BaseModel]:
    # Imported when the document is built: web.blueprints imports this package.
    from web.blueprints.ws import IncomingMessage

    return IncomingMessage


def _channels() -> list[_Channel]:
    IncomingMessage = _incoming_message()
    return [
        _Channel(
            key="frontend",
            address="/frontend/ws",
            server="http",
            title="Front-end socket",
            description="The web UI's socket (ENDPOINTS.md §9). Each chat message gets "
            "exactly one `agent_response` frame; messages are answered one at a time, "
            "up to 16 waiting per session. `agent_log` frames of the session's turns "
            "come as they are stored. With `events=1` (or `after_seq`), every event of "
            "the session's turns comes as a `turn_event` frame. On every new socket, "
            "replies that reached no socket are sent first.",
            receive=[
                _Message(
                    "chatMessage",
                    IncomingMessage,
                    "Chat message",
                    "A message to the session's conversation (current form); `llm_name` is "
                    "required, here or in `llm`.",
                    [("current form", ex.CHAT_MESSAGE)],
                ),
                _Message(
                    "chatMessageOlder",
                    IncomingMessage,
                    "Chat message (older form)",
                    "The same, with the model named in `llm` (the provider that "
                    "owns the config is used when none is given).",
                    [("older form", ex.CHAT_MESSAGE_OLDER)],
                ),
                _Message(
                    "cancel",
                    CancelMessage,
                    "Cancel a turn",
                    "Cancel a running or queued turn of this session.",
                    [("cancel", ex.CANCEL)],
                ),
            ],
            send=[
                _Message(
                    "agentResponse",
                    AgentResponseFrame,
                    "Agent response",
                    "The answer to one chat message.",
                    [("answered", ex.AGENT_RESPONSE), ("failed", ex.AGENT_RESPONSE_FAILED)],
                ),
                _Message(
                    "agentLog",
                    AgentLogFrame,
                    "Agent log",
                    "A stored log of one of the session's turns.",
                    [("log", ex.AGENT_LOG)],
                ),
                _Message(
                    "error",
                    ErrorFrame,
                    "Error",
                    "The answer to a frame that is not a valid message or cancel.",
                    [("invalid frame", ex.ERROR_VALIDATION), ("cancel", ex.ERROR_CANCEL)],
                ),
                _Message(
                    "turnEvent",
                    TurnEventFrame,
                    "Turn event",
                    "One event of a turn (sockets that opted in only).",
                    [(f"{e['kind']}", e) for e in ex.TURN_EVENTS],
                ),
            ],
            bindings={
                "ws": {
                    "method": "GET",
                    "query": _inline(FrontendQuery),
                    "bindingVersion": "0.1.0",
                }
            },
            close_codes=_FRONTEND_CLOSE_CODES,
        ),
        _Channel(
            key="router",
            address="/ws",
            server="router",
            title="Router socket",
            description="The agents' hub (PROTOCOL.md §1), for unmodified `genai-protocol` "
            "1.0.9 and 2.x clients: agents (their main socket), the master agent, the "
            "back-end, and one short-lived socket per library `send()`. Text frames, "
            "one JSON object each, at most 1 MiB (a larger one is refused with an "
            "`agent_error` of type `InvalidJSONRequestFormat`). Nothing answers "
            "`agent_register` or `agent_log`; a frame that is not JSON, or has no known "
            "`message_type`, is answered with the router's error frame.",
            receive=[
                _Message(
                    "agentRegister",
                    AgentRegister,
                    "agent_register",
                    "An agent announces its name, description and input schema.",
                    [("2.x", ex.REGISTER), ("1.0.9 without name=", ex.REGISTER_109)],
                ),
                _Message(
                    "agentInvoke",
                    AgentInvoke,
                    "agent_invoke",
                    "Call an agent (or the master, for the back-end).",
                    [("send()", ex.INVOKE), ("back-end stops an agent", ex.INVOKE_STOP)],
                ),
                _Message(
                    "agentResponseIn",
                    AgentResponseIn,
                    "agent_response",
                    "An agent's answer to an invocation.",
                    [
                        ("2.0.3", ex.RESPONSE_203),
                        ("1.0.9, 2.0.0-2.0.2", ex.RESPONSE_109),
                        ("pydantic result (flattened)", ex.RESPONSE_FLAT),
                    ],
                ),
                _Message(
                    "agentErrorIn",
                    AgentErrorIn,
                    "agent_error",
                    "An agent's failure.",
                    [("2.0.3", ex.ERROR_203)],
                ),
                _Message(
                    "agentLog",
                    AgentLog,
                    "agent_log",
                    "A log line of an agent.",
                    [("2.x", ex.LOG_2X), ("1.0.9", ex.LOG_109)],
                ),
            ],
            send=[
                _Message(
                    "invocation",
                    Invocation,
                    "invocation",
                    "An invocation for the target's main socket.",
                    [("invoke", ex.INVOCATION)],
                ),
                _Message(
                    "agentResponseOut",
                    AgentResponseOut,
                    "agent_response",
                    "An answer, for the socket that invoked.",
                    [("answer", ex.RESPONSE_OUT)],
                ),
                _Message(
                    "agentErrorOut",
                    AgentErrorOut,
                    "agent_error",
                    "A failed call, for the socket that invoked.",
                    [("not active", ex.NOT_ACTIVE), ("gone", ex.UNREGISTERED)],
                ),
                _Message(
                    "routerError",
                    RouterError,
                    "error",
                    "The router's own error, or the back-end stopping an agent.",
                    [("invalid JSON", ex.INVALID_JSON), ("token refused", ex.TOKEN_REFUSED)],
                ),
                _Message(
                    "backendRegister",
                    BackendRegister,
                    "agent_register (to the back-end)",
                    "An agent's registration, for the back-end.",
                    [("forward", ex.FORWARD_REGISTER)],
                ),
                _Message(
                    "backendUnregister",
                    BackendUnregister,
                    "agent_unregister (to the back-end)",
                    "An agent went away, for the back-end.",
                    [("forward", ex.FORWARD_UNREGISTER)],
                ),
                _Message(
                    "backendLog",
                    BackendLog,
                    "agent_log (to the back-end)",
                    "An agent's log, for the back-end.",
                    [("forward", ex.FORWARD_LOG)],
                ),
            ],
            bindings={
                "ws": {"method": "GET", "headers": _ROUTER_HEADERS, "bindingVersion": "0.1.0"}
            },
            close_codes=_ROUTER_CLOSE_CODES,
        ),
    ]


def _inline(model: type[BaseModel]) -> dict[str, Any]:
    # Binding schemas stand alone (a query string has no nested objects).
    schema: dict[str, Any] = _asyncapi_schema(model.model_json_schema())
    return schema


def _component(message: _Message) -> str:
    return message.model.__name__


@functools.cache
def _build() -> dict[str, Any]:
    channels = _channels()
    models = {m.model for c in channels for m in (*c.receive, *c.send)}
    keyed, top = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for (model, _mode), schema in keyed.items():
        if "$ref" not in schema:
            schemas[model.__name__] = schema
    schemas = {name: _asyncapi_schema(schema) for name, schema in sorted(schemas.items())}
    # parse_message's own rule, past the model: llm_name in either form.
    schemas[_incoming_message().__name__]["anyOf"] = [
        {"required": ["llm_name"], "properties": {"llm_name": {"type": "string"}}},
        {
            "required": ["llm"],
            "properties": {
                "llm": {
                    "type": "object",
                    "required": ["llm_name"],
                    "properties": {"llm_name": {"type": "string"}},
                }
            },
        },
    ]
    messages: dict[str, Any] = {}
    document_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel in channels:
        channel_messages: dict[str, Any] = {}
        for action, listed in (("receive", channel.receive), ("send", channel.send)):
            for message in listed:
                component = f"{channel.key}.{message.name}"
                messages[component] = {
                    "name": message.name,
                    "title": message.title,
                    "summary": message.summary,
                    "description": (message.model.__doc__ or "").strip(),
                    "contentType": "application/json",
                    "payload": {"$ref": _REF.format(model=_component(message))},
                    "examples": [
                        {"name": name, "payload": payload} for name, payload in message.examples
                    ],
                }
                channel_messages[message.name] = {"$ref": f"#/components/messages/{component}"}
            operations[f"{channel.key}.{action}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel.key}"},
                "title": ("What clients send" if action == "receive" else "What the server sends"),
                "messages": [
                    {"$ref": f"#/channels/{channel.key}/messages/{m.name}"} for m in listed
                ],
            }
        document_channels[channel.key] = {
            "address": channel.address,
            "title": channel.title,
            "description": channel.description,
            "servers": [{"$ref": f"#/servers/{channel.server}"}],
            "messages": channel_messages,
            "bindings": channel.bindings,
            "x-close-codes": channel.close_codes,
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "genai-backend WebSockets",
            "version": "1.0.0",
            "description": "The front-end socket `/frontend/ws` (HTTP port, default 8000) and "
            "the agents' router socket `/ws` (router port, default 8080). Payload schemas "
            "are generated from the pydantic models the server validates with or "
            "describes its frames by. The REST API is at /docs.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "http": {
                "host": "localhost:8000",
                "protocol": "ws",
                "description": "The HTTP face (`HTTP_HOST`, `HTTP_PORT`).",
            },
            "router": {
                "host": "localhost:8080",
                "protocol": "ws",
                "description": "The embedded router (`ROUTER_HOST`, `ROUTER_PORT`).",
            },
        },
        "channels": document_channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def asyncapi_document() -> dict[str, Any]:
    """Return the AsyncAPI 3.0 document (a fresh copy; it is built once)."""
    return copy.deepcopy(_build())


def payload_schema(document: dict[str, Any], channel: str, action: Action) -> dict[str, Any]:
    """Return one JSON Schema that a frame of ``channel`` in the direction ``action``
    (``receive``: sent by clients; ``send``: sent by the server) must match: any of the
    payloads of the operation's messages, with the document's components to resolve
    references against.

    Raises:
        KeyError: The document has no such channel or operation.
    """
    operation = document["operations"][f"{channel}.{action}"]
    payloads = []
    for ref in operation["messages"]:
        name = ref["$ref"].rsplit("/", 1)[1]
        component = document["channels"][channel]["messages"][name]["$ref"].rsplit("/", 1)[1]
        payloads.append(document["components"]["messages"][component]["payload"])
    return {"components": document["components"], "anyOf": payloads}


def _asyncapi_schema(schema: Any) -> Any:
    """Turn pydantic's JSON Schema into an AsyncAPI Schema object (recursively)."""
    if isinstance(schema, list):
        return [_asyncapi_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _asyncapi_schema(value) for key, value in schema.items() if key != "$defs"}
    if isinstance(out.get("discriminator"), dict):
        # OpenAPI's {"propertyName", "mapping"}; AsyncAPI's discriminator is the name.
        out["discriminator"] = out["discriminator"]["propertyName"]
    return out
