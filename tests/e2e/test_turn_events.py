"""A turn's events through the whole path: the built-in master calls two real agents,
and a socket with ``events=1`` sees every step, numbered without gaps, while the same
events are stored; the built-in master's work stops when the turn is cancelled."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from websockets.asyncio.client import connect

from actors.chat import CANCELLED
from actors.master import GetMasterStatus
from actors.router import MASTER_SERVER_ML

from ..actors.master.fake_openai import HANG, text, tool_call
from .conftest import make_settings, open_backend
from .test_builtin_master import _builtin as _builtin
from .test_builtin_master import _fake as _fake
from .test_builtin_master import _model as _model
from .test_builtin_master import add_model, running_agent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.abc import Process
    from websockets.asyncio.client import ClientConnection

    from ..actors.master.fake_openai import FakeOpenAI, Reply
    from .conftest import Backend
    from .test_builtin_master import Model


@pytest.fixture(name="patient")
async def _patient(tmp_path: Path, database_url: str) -> AsyncIterator[Backend]:
    """The built-in master with a model that may take its time (cancel tests)."""
    settings = make_settings(tmp_path, MASTER_AGENT="builtin", MASTER_MODEL_TIMEOUT=60.0)
    async with open_backend(settings, database_url) as backend:
        await backend.wait_session()
        await backend.wait_connected(MASTER_SERVER_ML)
        yield backend


async def turn_events(
    ws: ClientConnection, last: str, within: float = 20.0
) -> list[dict[str, Any]]:
    """Read frames up to the turn event ``last``; return the turn events, in order."""
    found: list[dict[str, Any]] = []
    with anyio.fail_after(within):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == "turn_event":
                found.append(frame)
                if frame["kind"] == last:
                    return found


async def test_a_turn_that_calls_two_agents_is_watched_step_by_step(
    builtin: Backend, fake: FakeOpenAI, model: Model, processes: list[Process]
) -> None:
    owner = await builtin.user()
    await add_model(builtin, owner, fake.base_url)
    first = await running_agent(builtin, owner, processes, "first echo")
    second = await running_agent(builtin, owner, processes, "second echo")

    def respond(request: dict[str, Any]) -> Reply:
        # Both agents register as the echo agent: call one tool, then the other.
        names = sorted(t["function"]["name"] for t in request.get("tools", []))
        calls = sum(1 for m in request["messages"] if m["role"] == "tool")
        if calls < 2 and len(names) == 2:
            return tool_call(names[calls], {"text": f"call {calls}"})
        return text("both answered")

    model.respond = respond
    session_id = str(uuid.uuid4())
    async with builtin.frontend(owner, session_id) as plain:
        host, port = builtin.server.http_addresses[0]
        url = f"ws://{host}:{port}/frontend/ws?token={owner.token}&session_id={session_id}&events=1"
        async with connect(url) as ws:
            await plain.say("call both")
            events = await turn_events(ws, "answered")
            reply = json.loads(await ws.recv())
        # The socket without the flag got the reply and logs, and no event.
        frame = await plain.response(within=15)
    assert frame["type"] == "agent_response"
    assert reply == frame

    seqs = [event["seq"] for event in events]
    assert seqs == list(range(1, len(seqs) + 1)), seqs
    steps = [
        (event["kind"], event["data"].get("agent_id"))
        for event in events
        if event["kind"] != "agent_log"
    ]
    called = [agent for kind, agent in steps if kind == "agent_invoked"]
    assert sorted(called) == sorted([first.id, second.id]), steps
    assert steps == [
        ("accepted", None),
        ("started", None),
        ("master_invoked", None),
        ("agent_invoked", called[0]),
        ("agent_answered", called[0]),
        ("agent_invoked", called[1]),
        ("agent_answered", called[1]),
        ("answered", None),
    ], steps
    assert events[2]["data"] == {"master": "builtin"}
    logs = [event for event in events if event["kind"] == "agent_log"]
    assert {log["data"]["agent_id"] for log in logs} <= {first.id, second.id}
    assert events[-1]["data"]["reply"] == frame
    request_id = frame["response"]["request_id"]
    assert {event["request_id"] for event in events} == {request_id}

    stored = await builtin.http.get(f"/api/chat/turns/{request_id}", headers=owner.headers)
    assert stored.status_code == 200, stored.text
    body = stored.json()
    assert body["status"] == "answered"
    assert [(e["seq"], e["kind"]) for e in body["events"]] == [
        (e["seq"], e["kind"]) for e in events
    ]


async def test_cancelling_stops_the_built_in_masters_model_call(
    patient: Backend, fake: FakeOpenAI, model: Model
) -> None:
    builtin = patient
    owner = await builtin.user()
    await add_model(builtin, owner, fake.base_url)
    model.respond = lambda _request: HANG
    session_id = str(uuid.uuid4())
    master = builtin.server.system.ref_of("router.master")
    async with builtin.frontend(owner, session_id) as ui:
        await ui.say("think forever")
        with anyio.fail_after(10):
            while not fake.requests:  # noqa: ASYNC110 - the fake server has no event
                await anyio.sleep(0.01)
        assert (await master.ask(GetMasterStatus())).running == 1
        turns = await builtin.http.get(
            "/api/chat/turns", params={"session_id": session_id}, headers=owner.headers
        )
        request_id = turns.json()["turns"][0]["request_id"]
        await ui.ws.send(json.dumps({"type": "cancel", "request_id": request_id}))
        frame = await ui.response(within=10)
        assert frame["response"]["response"]["response"] == CANCELLED
        with anyio.fail_after(5):
            while (await master.ask(GetMasterStatus())).running:  # noqa: ASYNC110
                await anyio.sleep(0.02)
        # Nothing else is answered for it.
        assert [f for f in await ui.silent_for(0.5) if f.get("type") == "agent_response"] == []
