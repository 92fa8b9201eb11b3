"""Hostile frames on every WebSocket face, through a real server.

``/frontend/ws`` and the router's ``/ws`` (as an agent with a valid agent token, and as
an invoke socket) get a fixed corpus of malformed, wrongly-typed, oversized and binary
frames, then junk from a seeded generator (the same frames every run). Each frame is
answered with an error frame, or closes its socket with a documented code (1009 past
the transport limit). Afterwards the server still answers REST and a fresh chat socket,
and bystanders (another user's chat socket, another agent's router socket) received
nothing of it.
"""

from __future__ import annotations

import base64
import json
import random
import string
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .live import Live, open_live

SEED = 20240607
RANDOM_FRAMES = 60
FRAME_LIMIT = 64 * 1024
ROUTER_TRANSPORT_LIMIT = 4 * 1024 * 1024  # four times the router's 1 MiB frame limit

CORPUS: list[str | bytes] = [
    '{"type": "cancel"}',
    '{"type": "cancel", "request_id": "not-a-uuid"}',
    '{"type": "cancel", "request_id": null}',
    b'{"type": "cancel", "request_id": 7}',
    '{"type": "cancel", "request_id": "00000000-0000-0000-0000-000000000000"}',
    "",
    " ",
    "{",
    "}",
    '{"message": "x",',
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "NaN",
    "Infinity",
    '"message"',
    "[]",
    '[{"message": "x"}]',
    "{}",
    '{"message": 1}',
    '{"message": null, "llm_name": 5}',
    '{"message": ["x"], "llm_name": {"a": 1}}',
    '{"message": "x", "llm_name": "c", "files": ["not-a-uuid"]}',
    '{"message": "x", "llm_name": "c", "files": {"a": 1}}',
    '{"message": {"message": {"message": {}}}}',
    '{"llm": "older"}',
    '{"llm": {"llm_name": 7}}',
    '{"message": "x", "llm_name": "c", "files": [' + ", ".join(["1"] * 1000) + "]}",
    "\x00",
    '{"\x00": "\x00"}',
    '{"message": "\\u0000"}',
    '{"message": "\\ud800"}',
    "[" * 50_000,
    '{"a":' * 10_000,
    '{"message": "' + "y" * 60_000 + '"}',
    '{"message": ' + "9" * 5_000 + "}",
    "\ufeff{}",
    b"",
    b"\x00\xff\xfe\x80",
    b'{"message": "x"}',
    b'{"message": "\xff\xfe"}',
]


def _junk(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.randint(-(2**70), 2**70)
    if kind == 2:
        return rng.uniform(-1e300, 1e300)
    if kind in (3, 4, 5):
        alphabet = string.printable + "\x00\u2603\U0001f600\u202e"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
    if kind in (6, 7):
        return {
            rng.choice(["message", "llm_name", "provider", "llm", "files", "x"]): _junk(
                rng, depth + 1
            )
            for _ in range(rng.randrange(0, 5))
        }
    return [_junk(rng, depth + 1) for _ in range(rng.randrange(0, 5))]


def random_frames(seed: int = SEED) -> list[str | bytes]:
    """Junk from a seeded generator: JSON of random shapes, broken JSON, random bytes."""
    rng = random.Random(seed)
    frames: list[str | bytes] = []
    for _ in range(RANDOM_FRAMES):
        text = json.dumps(_junk(rng))
        match rng.randrange(4):
            case 0:
                frames.append(text)
            case 1:
                frames.append(text[: rng.randrange(len(text) + 1)] + rng.choice('{[",:'))
            case 2:
                frames.append(text.encode())
            case _:
                frames.append(rng.randbytes(rng.randrange(1, 200)))
    return frames


@pytest.fixture(name="live")
async def _live(
    tmp_path: Path, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Live]:
    # ``sessionmaker`` empties the tables once the test is over.
    async with open_live(tmp_path, database_url, MAX_WS_FRAME_BYTES=FRAME_LIMIT) as live:
        yield live


async def _recv_json(ws: ClientConnection) -> Any:
    with anyio.fail_after(10):
        return json.loads(await ws.recv())


async def _closed_with(ws: ClientConnection) -> int:
    with anyio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
        while True:
            await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def _still_answers_chat(ws: ClientConnection) -> None:
    """The next frame on ``ws`` answers this probe: nothing else was queued before it."""
    await ws.send('{"probe": true}')
    reply = await _recv_json(ws)
    assert reply["type"] == "error", reply
    assert reply["details"][0]["input"] == {"probe": True}, reply


async def _still_answers_router(ws: ClientConnection) -> None:
    await ws.send("not json")
    reply = await _recv_json(ws)
    assert reply == {
        "error": {"error_message": "Invalid JSON format", "error_type": "InvalidJSONRequestFormat"}
    }


async def _register_agent(live: Live, token: str) -> str:
    async with live.http() as http:
        response = await http.post(
            "/api/agents/register",
            json={"name": f"fuzz_{uuid.uuid4().hex[:6]}", "description": "d"}
            | {"input_parameters": {}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    return str(response.json()["jwt"])


async def _server_still_serves(live: Live, token: str) -> None:
    async with live.http() as http:
        live_ = await http.get("/health/live")
        assert live_.status_code == 200
        agents = await http.get("/api/agents/", headers={"Authorization": f"Bearer {token}"})
        assert agents.status_code == 200, agents.text
    async with live.chat(token) as ws:
        await _still_answers_chat(ws)


class TestFrontendSocket:
    async def test_every_hostile_frame_gets_an_error_frame(self, live: Live) -> None:
        _, token = await live.login()
        _, other = await live.login()
        frames = [*CORPUS, *random_frames()]
        async with live.chat(other) as bystander, live.chat(token) as ws:
            for frame in frames:
                await ws.send(frame)
                reply = await _recv_json(ws)
                if reply.get("type") == "agent_response":
                    # Valid by accident: answered as a failed turn, never a crash.
                    assert reply["response"]["response"]["is_success"] is False, (frame, reply)
                else:
                    assert reply["type"] == "error", (frame, reply)
                    # A well-formed cancel of a turn that is not there is told so.
                    expected = (
                        "Turn not found"
                        if b'"cancel", "request_id": "0'
                        in (frame if isinstance(frame, bytes) else frame.encode())
                        else "Message validation failed"
                    )
                    assert reply["error"] == expected, (frame, reply)
            await _still_answers_chat(ws)
            await _still_answers_chat(bystander)
        await _server_still_serves(live, token)

    @pytest.mark.parametrize("binary", [False, True])
    async def test_a_frame_past_the_limit_closes_1009_and_nothing_else(
        self, live: Live, binary: bool
    ) -> None:
        _, token = await live.login()
        _, other = await live.login()
        async with live.chat(other) as bystander, live.chat(token) as second:
            async with live.chat(token) as ws:
                frame = "x" * (FRAME_LIMIT + 1)
                await ws.send(frame.encode() if binary else frame)
                assert await _closed_with(ws) == 1009
            await _still_answers_chat(second)
            await _still_answers_chat(bystander)
        await _server_still_serves(live, token)


class TestRouterSocket:
    @pytest.mark.parametrize("kind", ["agent", "invoke"])
    async def test_every_hostile_frame_gets_an_error_frame(self, live: Live, kind: str) -> None:
        _, token = await live.login()
        _, other = await live.login()
        jwt = await _register_agent(live, token)
        bystander_jwt = await _register_agent(live, other)
        # A send() socket is admitted for a caller connected with a verified token:
        # the bystander, connected first.
        caller = json.loads(base64.urlsafe_b64decode(bystander_jwt.split(".")[1] + "=="))["sub"]
        headers = (
            {"X-Custom-Authorization": jwt}
            if kind == "agent"
            else {"x-custom-invoke-key": f"{caller}:{uuid.uuid4()}"}
        )
        bystander_headers = {"X-Custom-Authorization": bystander_jwt}
        frames = [*CORPUS, *random_frames(SEED + 1)]
        async with (
            live.router(bystander_headers) as bystander,
            live.chat(other) as chat_bystander,
        ):
            await _still_answers_router(bystander)  # open on the hub: a caller
            async with live.router(headers, max_size=None) as ws:
                await _hostile_frames(ws, frames)
            await _still_answers_router(bystander)
            await _still_answers_chat(chat_bystander)
        await _server_still_serves(live, token)


async def _hostile_frames(ws: ClientConnection, frames: list[str]) -> None:
    for frame in frames:
        await ws.send(frame)
        reply = await _recv_json(ws)
        error = reply.get("error")
        assert isinstance(error, dict), (frame, reply)
        assert error["error_type"] in {
            "InvalidJSONRequestFormat",
            "AgentGeneralError",
        }, (frame, reply)
    # Over the router's frame limit: refused with an error frame, still open.
    await ws.send('{"a": "' + "x" * (1024 * 1024) + '"}')
    reply = await _recv_json(ws)
    assert "exceeds the limit" in reply["error"]["error_message"], reply
    await _still_answers_router(ws)
    # Over the transport limit: closed 1009.
    await ws.send("x" * (ROUTER_TRANSPORT_LIMIT + 1))
    assert await _closed_with(ws) == 1009
