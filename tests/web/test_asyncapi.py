"""The AsyncAPI document of the two WebSockets: its structure, its page, its agreement
with the router's parser, and real traffic of both sockets validated against it."""

from __future__ import annotations

import copy
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import jsonschema
import pytest
from pydantic import ValidationError
from websockets.asyncio.client import connect

from actors.router import ApiKeys, ClientKind, Identity, RoutingTable
from tests.e2e.conftest import Backend, make_settings, open_backend
from tests.e2e.conftest import _python_109 as _python_109
from web.asyncapi import RouterFrameIn, asyncapi_document, payload_schema

from ..actors.agents import stop_processes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.abc import Process
    from quart.testing import QuartClient

    from actors.router import Deliver

__all__ = ["_python_109"]

DOCUMENT = asyncapi_document()


def _validator(channel: str, action: str) -> jsonschema.Draft202012Validator:
    schema = payload_schema(DOCUMENT, channel, action)  # type: ignore[arg-type]
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _pointer(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


# -- the document ---------------------------------------------------------------------


class TestDocument:
    async def test_served_as_built(self, client: QuartClient) -> None:
        response = await client.get("/asyncapi.json")
        assert response.status_code == 200
        assert response.content_type == "application/json"
        assert await response.get_json() == DOCUMENT

    def test_asyncapi_3_structure(self) -> None:
        # No package ships the AsyncAPI 3.0 JSON Schema: its required structure, by hand.
        assert DOCUMENT["asyncapi"] == "3.0.0"
        assert {"title", "version"} <= set(DOCUMENT["info"])
        for server in DOCUMENT["servers"].values():
            assert {"host", "protocol"} <= set(server)
        assert {c["address"] for c in DOCUMENT["channels"].values()} == {"/frontend/ws", "/ws"}
        for key, channel in DOCUMENT["channels"].items():
            assert channel["messages"], key
            ws = channel["bindings"]["ws"]
            assert ws["bindingVersion"] == "0.1.0"
            for part in ("query", "headers"):
                if part in ws:
                    assert ws[part]["type"] == "object" and ws[part]["properties"]
            assert channel["x-close-codes"]
        for name, operation in DOCUMENT["operations"].items():
            assert operation["action"] in ("send", "receive"), name
            channel_ref = operation["channel"]["$ref"]
            _pointer(DOCUMENT, channel_ref)
            for message in operation["messages"]:
                # An operation's messages must be its channel's (AsyncAPI 3.0 §Operation).
                assert message["$ref"].startswith(channel_ref + "/messages/"), name
        for ref in _refs(DOCUMENT):
            assert _pointer(DOCUMENT, ref) is not None, ref
        for name, message in DOCUMENT["components"]["messages"].items():
            assert {"name", "payload", "contentType"} <= set(message), name
            assert message["examples"], name

    def test_schemas_are_asyncapi_schema_objects(self) -> None:
        for name, schema in DOCUMENT["components"]["schemas"].items():
            # AsyncAPI Schema is a superset of draft 07; its discriminator is a name.
            jsonschema.Draft7Validator.check_schema(schema)
            for node in _nodes(schema):
                if "discriminator" in node:
                    assert isinstance(node["discriminator"], str), name

    def test_examples_match_their_payloads(self) -> None:
        for message in DOCUMENT["components"]["messages"].values():
            schema = {"components": DOCUMENT["components"], **message["payload"]}
            for example in message["examples"]:
                jsonschema.validate(example["payload"], schema, jsonschema.Draft202012Validator)

    def test_every_turn_event_kind_is_described(self) -> None:
        out = _validator("frontend", "send")
        kinds = [
            "accepted",
            "started",
            "master_invoked",
            "agent_invoked",
            "agent_answered",
            "agent_failed",
            "agent_log",
            "answered",
            "failed",
            "cancelled",
            "interrupted",
            "late_reply",
        ]
        example = DOCUMENT["components"]["messages"]["frontend.turnEvent"]["examples"]
        by_kind = {e["payload"]["kind"]: e["payload"] for e in example}
        for kind in kinds:
            frame = copy.deepcopy(by_kind.get(kind) or by_kind["answered"])
            frame["kind"] = kind
            assert out.is_valid(frame), kind
        frame = copy.deepcopy(by_kind["started"])
        frame["kind"] = "exploded"
        assert not out.is_valid(frame)
        frame = copy.deepcopy(by_kind["master_invoked"])
        frame["data"] = {"master": "somebody"}
        assert not out.is_valid(frame)

    @pytest.mark.parametrize(
        ("channel", "action", "frame"),
        [
            ("frontend", "send", {"type": "agent_register_ack"}),
            ("frontend", "send", {"type": "agent_response", "response": {}}),
            ("frontend", "send", {"error": "no type"}),
            ("frontend", "receive", {"type": "cancel"}),
            ("frontend", "receive", {"message": "no model"}),
            ("router", "receive", {"message_type": "agent_unregister"}),
            ("router", "receive", {"message_type": "ml_invoke", "request_payload": {}}),
            ("router", "send", {"message_type": "agent_register_ack"}),
            ("router", "send", {"request_payload": {"message_type": "agent_exploded"}}),
        ],
    )
    def test_undescribed_frames_fail(self, channel: str, action: str, frame: Any) -> None:
        assert not _validator(channel, action).is_valid(frame)


def _nodes(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        return [node] + [n for value in node.values() for n in _nodes(value)]
    if isinstance(node, list):
        return [n for item in node for n in _nodes(item)]
    return []


async def test_page_renders_without_scripts(client: QuartClient) -> None:
    response = await client.get("/asyncapi")
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    page = await response.get_data(as_text=True)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for channel in DOCUMENT["channels"].values():
        assert channel["address"] in page
        for close in channel["x-close-codes"]:
            assert f"<td>{close['code']}</td>" in page
    for message in DOCUMENT["components"]["messages"].values():
        assert f"id='{message['name']}'" in page
    for field in ("after_seq", "llm_name", "request_payload", "invoked_by", "agents_trace"):
        assert f"<code>{field}</code>" in page or f".{field}</code>" in page, field


# -- the router's parser and the models agree ----------------------------------------

_AGENT = str(uuid.uuid4())
_CORPUS_VALID: list[tuple[str, Any]] = [
    (
        "agent_register",
        {
            "message_type": "agent_register",
            "request_payload": {
                "agent_name": "a",
                "agent_description": "d",
                "agent_input_schema": {},
            },
        },
    ),
    (
        "agent_invoke",
        {
            "message_type": "agent_invoke",
            "agent_uuid": _AGENT,
            "request_payload": {"text": "x"},
            "request_metadata": {"request_id": "r", "session_id": "s"},
        },
    ),
    ("agent_invoke", {"message_type": "agent_invoke", "agent_uuid": _AGENT}),
    ("agent_invoke", {"message_type": "agent_invoke", "request_payload": {}}),
    (
        "agent_response",
        {
            "message_type": "agent_response",
            "response": 1,
            "execution_time": 0.1,
            "invoked_by": "x#1",
        },
    ),
    (
        "agent_response",
        {
            "message_type": "agent_response",
            "response": None,
            "execution_time": 0,
            "invoked_by": "x#1",
            "response_metadata": {"request_id": "r", "session_id": "s"},
        },
    ),
    (
        "agent_response",
        {
            "message_type": "agent_response",
            "text": "m",
            "n": 2,
            "execution_time": 0.1,
            "invoked_by": "x#1",
        },
    ),
    (
        "agent_error",
        {
            "message_type": "agent_error",
            "error": {"error_message": "boom"},
            "execution_time": 0,
            "invoked_by": "x#1",
        },
    ),
    (
        "agent_log",
        {
            "message_type": "agent_log",
            "log_message": "hi",
            "log_level": "info",
            "agent_uuid": _AGENT,
            "request_id": "r",
            "session_id": "s",
        },
    ),
    (
        "agent_log",
        {
            "message_type": "agent_log",
            "log_message": "hi",
            "log_level": "info",
            "agent_uuid": _AGENT,
            "request_id": "r",
            "session_id": "s",
            "invoked_by": "x#1",
        },
    ),
]
_CORPUS_INVALID: list[str] = [
    "not json",
    "[1, 2]",
    '"text"',
    "{",
    "{}",
    '{"request_payload": {}}',
    '{"message_type": "agent_unregister", "agent_uuid": "x"}',
    '{"message_type": "ml_invoke", "request_payload": {}}',
    '{"message_type": "agent_register_ack"}',
    '{"message_type": 7}',
    '{"message_type": null}',
    '{"message_type": "agent_invoke"}',
    '{"message_type": "agent_invoke", "request_metadata": {}}',
]
_REFUSALS = ("Invalid JSON format", "Unexpected exception", "Missing request payload")


def _router_outcome(text: str) -> str | None:
    """Route one frame from an agent; return its type, or None if the router refused it."""
    table = RoutingTable(ApiKeys())
    table.open(Identity("master_server_be", ClientKind.BACKEND))
    sender, _ = table.open(Identity(_AGENT, ClientKind.AGENT, agent_jwt="jwt"))
    out: list[Deliver] = table.receive(sender, text)
    for item in out:
        frame = item.frame if isinstance(item.frame, dict) else json.loads(item.frame)
        error = frame.get("error")
        # A refusal is the router's own error frame, which has no message_type.
        if (
            item.conn_id == sender
            and isinstance(error, dict)
            and "message_type" not in frame
            and str(error.get("error_message", "")).startswith(_REFUSALS)
        ):
            return None
    return str(json.loads(text)["message_type"])


def _model_outcome(text: str) -> str | None:
    try:
        return RouterFrameIn.model_validate_json(text).root.message_type
    except ValidationError:
        return None


@pytest.mark.parametrize(("expected", "frame"), _CORPUS_VALID)
def test_router_and_models_agree_on_valid_frames(expected: str, frame: Any) -> None:
    text = json.dumps(frame)
    assert _router_outcome(text) == expected
    assert _model_outcome(text) == expected
    assert _validator("router", "receive").is_valid(frame)


@pytest.mark.parametrize("text", _CORPUS_INVALID)
def test_router_and_models_agree_on_refused_frames(text: str) -> None:
    assert _router_outcome(text) is None
    assert _model_outcome(text) is None
    try:
        frame = json.loads(text)
    except ValueError:
        return
    assert not _validator("router", "receive").is_valid(frame)


# -- recorded real traffic ------------------------------------------------------------


class Recorder:
    """Every frame the embedded router reads and writes, taken at its switchboard.

    The back-end's own connection and the master invocations it opens are in-process
    (objects, no socket); every other connection is a real socket. Frames are copied
    as they pass: the router mutates what it routes.
    """

    def __init__(self, backend: Backend) -> None:
        hub = backend.server.system.ref_of("router.hub")._cell.instance
        switchboard = hub.switchboard
        self.inbound: list[Any] = []
        self.unparsed: list[str] = []
        self.outbound: list[dict[str, Any]] = []
        receive, deliver = switchboard.receive, switchboard._deliver

        def recording_receive(conn_id: str, data: Any) -> None:
            if isinstance(data, dict):
                self.inbound.append(copy.deepcopy(data))
            else:
                try:
                    self.inbound.append(json.loads(data))
                except ValueError:
                    self.unparsed.append(data.decode() if isinstance(data, bytes) else data)
            receive(conn_id, data)

        def recording_deliver(out: list[Deliver]) -> None:
            for item in out:
                frame = item.frame
                self.outbound.append(
                    copy.deepcopy(frame) if isinstance(frame, dict) else json.loads(frame)
                )
            deliver(out)

        switchboard.receive = recording_receive
        switchboard._deliver = recording_deliver


@pytest.fixture(name="traffic_backend")
async def _traffic_backend(tmp_path: Path, database_url: str) -> AsyncIterator[Backend]:
    async with open_backend(make_settings(tmp_path), database_url) as backend:
        await backend.wait_session()
        yield backend


@pytest.fixture(name="processes")
async def _processes() -> AsyncIterator[list[Process]]:
    processes: list[Process] = []
    try:
        yield processes
    finally:
        await stop_processes(processes)


async def test_recorded_traffic_validates(
    traffic_backend: Backend, processes: list[Process], python_109: Path
) -> None:
    backend = traffic_backend
    recorder = Recorder(backend)
    user = await backend.user()
    await backend.add_model(user)
    agent_203 = await backend.agent(user, "echo new")
    agent_109 = await backend.agent(user, "echo old")
    spare = await backend.agent(user, "raw socket")
    process_203 = await backend.start_agent(sys.executable, agent_203, processes)
    await backend.start_agent(python_109, agent_109, processes)
    await backend.start_master(python_109, processes)

    sent: list[Any] = []
    invalid_sent: list[str] = []
    received: list[dict[str, Any]] = []
    host, port = backend.server.http_addresses[0]
    url = f"ws://{host}:{port}/frontend/ws?token={user.token}&events=1"

    async with connect(url) as ws:

        async def say(frame: Any) -> None:
            sent.append(frame)
            await ws.send(json.dumps(frame))

        async def next_frame(within: float = 15.0) -> dict[str, Any]:
            with anyio.fail_after(within):
                frame: dict[str, Any] = json.loads(await ws.recv())
            received.append(frame)
            return frame

        async def until(kind: str) -> dict[str, Any]:
            while (frame := await next_frame())["type"] != kind:
                pass
            return frame

        await say({"message": "hello agents", "llm_name": "gpt", "provider": "openai"})
        first = await until("agent_response")
        assert first["response"]["response"]["is_success"] is True, first
        await say({"message": "older form", "llm": {"llm_name": "gpt"}})
        await until("agent_response")
        for bad in ("not json", json.dumps({"message": 1})):
            invalid_sent.append(bad)
            await ws.send(bad)
            await until("error")
        # A cancel of a finished turn: an error frame (or, before cancels are read,
        # the validation error of a frame that is not a message).
        await say({"type": "cancel", "request_id": first["response"]["request_id"]})
        error = await until("error")
        assert error["error"] in ("Turn is already finished", "Message validation failed")
        with anyio.move_on_after(1.0):  # late logs (1.0.9 sends them after the reply)
            while True:
                await next_frame()

    # The router: a socket sending what it should not, then an agent going away.
    headers = {"X-Custom-Authorization": spare.jwt}
    async with connect(backend.router_url, additional_headers=headers) as raw:
        for text in (
            "not json",
            json.dumps({"message_type": "agent_register_ack"}),
            json.dumps(
                {
                    "message_type": "agent_invoke",
                    "agent_uuid": str(uuid.uuid4()),
                    "request_payload": {},
                }
            ),
        ):
            await raw.send(text)
            with anyio.fail_after(5):
                assert "error" in json.loads(await raw.recv())
        # A reply nobody waits for: read, dropped, answered with nothing.
        await raw.send(
            json.dumps(
                {
                    "message_type": "agent_error",
                    "invoked_by": "",
                    "error": {"error_message": "stray"},
                    "execution_time": 0,
                }
            )
        )
    process_203.terminate()
    with anyio.fail_after(10):
        while not any(  # noqa: ASYNC110 - the recorder has no change notification
            f.get("request_payload", {}).get("message_type") == "agent_unregister"
            and f["request_payload"]["agent_uuid"] == agent_203.id
            for f in recorder.outbound
        ):
            await anyio.sleep(0.01)

    frontend_in, frontend_out = _validator("frontend", "receive"), _validator("frontend", "send")
    for frame in sent:
        assert not list(frontend_in.iter_errors(frame)), frame
    # The frames sent to be refused are not messages of the document either.
    assert not frontend_in.is_valid(json.loads(invalid_sent[1]))
    for frame in received:
        errors = [e.message for e in frontend_out.iter_errors(frame)]
        assert not errors, (frame, errors)
    types = {f["type"] for f in received}
    assert {"agent_response", "agent_log", "error"} <= types, types
    if "turn_event" in types:
        events = [f for f in received if f["type"] == "turn_event"]
        assert {"accepted", "started", "answered"} <= {e["kind"] for e in events}
        # A final event carries the reply frame exactly as the socket sent it.
        replies = [f for f in received if f["type"] == "agent_response"]
        finals = [e["data"]["reply"] for e in events if e["kind"] == "answered"]
        assert finals == replies

    router_in, router_out = _validator("router", "receive"), _validator("router", "send")
    refused = {"message_type": "agent_register_ack"}
    for frame in recorder.inbound:
        if frame == refused:
            assert not router_in.is_valid(frame)
            continue
        errors = [e.message for e in router_in.iter_errors(frame)]
        assert not errors, (frame, errors)
    for frame in recorder.outbound:
        errors = [e.message for e in router_out.iter_errors(frame)]
        assert not errors, (frame, errors)
    assert recorder.unparsed == ["not json"]
    inbound_types = {f.get("message_type") for f in recorder.inbound}
    assert {
        "agent_register",
        "agent_invoke",
        "agent_response",
        "agent_error",
        "agent_log",
    } <= inbound_types
    outbound_kinds = {
        f.get("message_type")
        or f.get("request_payload", {}).get("message_type")
        or ("invocation" if "invoked_by" in f else "error")
        for f in recorder.outbound
    }
    assert {
        "agent_register",
        "agent_unregister",
        "agent_log",
        "invocation",
        "agent_response",
        "agent_error",
        "error",
    } <= outbound_kinds, outbound_kinds
