"""Chat round trips through the whole path, next to the router's own floor.

Run: ``python -m bench.chat [turns per session]``. Prints one ``name=value`` per line.

The server is the real one from ``open_server`` (embedded router, router session, chat
actors, HTTP face) on a throw-away database (see ``bench.logs`` for where PostgreSQL
comes from). A user with a model config is made over the REST API; each session is a
front-end WebSocket that sends a message and waits for its ``agent_response``; the
master agent is an instant one (a plain WebSocket client connected as
``master_server_ml`` that answers every invocation at once). So a turn is: front-end
socket → chat actor (conversation, provider and config lookups, user turn stored) →
router session → router → master → back, master turn stored → front-end socket.

The floor, in the same run: a client invoking an instant echo agent through the same
router over its own socket (``floor_*``). ``p50_overhead_ms`` and ``p99_overhead_ms``
are the chat percentiles minus the floor's, at 20 sessions.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect

import persistence
from persistence import DatabaseSettings
from web import Settings
from web._server import open_server

from .logs import _admin, _free_port, _server_url

INSTANT = {"response": "ok", "agents_trace": [], "is_success": True}


async def _answer(ws: ClientConnection, response: Any) -> None:
    async for data in ws:
        frame = json.loads(data)
        if "invoked_by" not in frame:
            continue
        reply = {
            "response": response,
            "message_type": "agent_response",
            "execution_time": 0.0,
            "invoked_by": frame["invoked_by"],
        }
        await ws.send(json.dumps(reply))


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def _chat(http_base: str, token: str, sessions: int, turns: int) -> list[float]:
    host = http_base.removeprefix("http://")
    message = json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"})

    async def one() -> list[float]:
        url = f"ws://{host}/frontend/ws?token={token}&session_id={uuid.uuid4()}"
        samples = []
        async with connect(url, compression=None) as ws:
            for _ in range(turns):
                started = time.perf_counter()
                await ws.send(message)
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "agent_response":
                        break
                assert frame["response"]["response"]["is_success"], frame
                samples.append(time.perf_counter() - started)
        return samples

    results = await asyncio.gather(*(one() for _ in range(sessions)))
    return [s for r in results for s in r]


async def _floor(router_url: str, agent_id: str, sessions: int, turns: int) -> list[float]:
    async def one() -> list[float]:
        key = f"bench:{uuid.uuid4().hex}:{agent_id}"
        samples = []
        frame = json.dumps(
            {"message_type": "agent_invoke", "agent_uuid": agent_id, "request_payload": {}}
        )
        async with connect(
            router_url, additional_headers={"x-custom-invoke-key": key}, compression=None
        ) as ws:
            for _ in range(turns):
                started = time.perf_counter()
                await ws.send(frame)
                await ws.recv()
                samples.append(time.perf_counter() - started)
        return samples

    results = await asyncio.gather(*(one() for _ in range(sessions)))
    return [s for r in results for s in r]


async def run(database_url: str, turns: int) -> dict[str, float]:
    settings = Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=_free_port(),
        ROUTER_HOST="127.0.0.1",
        ROUTER_PORT=_free_port(),
        FILES_DIR=Path(tempfile.mkdtemp()) / "files",
        BCRYPT_ROUNDS=4,
        SHUTDOWN_GRACE_SECONDS=0.5,
    )
    results: dict[str, float] = {}
    async with open_server(settings, DatabaseSettings(DATABASE_URL=database_url)) as server:
        host, port = server.http_addresses[0]
        base = f"http://{host}:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            name = f"bench{uuid.uuid4().hex[:8]}"
            body = {"username": name, "password": "Secret#123"}
            (await http.post("/api/register", json=body)).raise_for_status()
            login = await http.post("/api/login/access-token", data=body)
            token = login.raise_for_status().json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            provider = {"name": "openai", "api_key": "sk"}
            (
                await http.post("/api/llm/model/provider", json=provider, headers=auth)
            ).raise_for_status()
            config = {"name": "gpt", "model": "m", "provider": "openai"}
            (await http.post("/api/llm/model/config", json=config, headers=auth)).raise_for_status()
        agent_id = str(uuid.uuid4())
        master_headers = {"API-KEY": settings.MASTER_AGENT_API_KEY}
        async with (
            connect(server.router_url, additional_headers=master_headers) as master,
            connect(
                server.router_url, additional_headers={"X-Custom-Authorization": agent_id}
            ) as agent,
        ):
            tasks = [
                asyncio.create_task(_answer(master, INSTANT)),
                asyncio.create_task(_answer(agent, "echo")),
            ]
            await asyncio.sleep(0.2)
            await _chat(base, token, 4, 20)  # warm-up
            await _floor(server.router_url, agent_id, 4, 20)
            for sessions in (1, 20):
                count = turns if sessions == 1 else max(20, turns // 4)
                started = time.perf_counter()
                chat = await _chat(base, token, sessions, count)
                chat_rate = len(chat) / (time.perf_counter() - started)
                started = time.perf_counter()
                floor = await _floor(server.router_url, agent_id, sessions, count)
                floor_rate = len(floor) / (time.perf_counter() - started)
                (c50, c99), (f50, f99) = _percentiles(chat), _percentiles(floor)
                results |= {
                    f"chat_turns_per_s_{sessions}": chat_rate,
                    f"chat_p50_ms_{sessions}": c50,
                    f"chat_p99_ms_{sessions}": c99,
                    f"floor_turns_per_s_{sessions}": floor_rate,
                    f"floor_p50_ms_{sessions}": f50,
                    f"floor_p99_ms_{sessions}": f99,
                }
            results["p50_overhead_ms"] = results["chat_p50_ms_20"] - results["floor_p50_ms_20"]
            results["p99_overhead_ms"] = results["chat_p99_ms_20"] - results["floor_p99_ms_20"]
            for task in tasks:
                task.cancel()
    return results


async def main(turns: int) -> None:
    server_url, embedded = await _server_url()
    name = f"genai_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        await persistence.upgrade_to_head(database_url)
        results = await run(database_url, turns)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded is not None:
            embedded.__exit__(None, None, None)
    for key, value in results.items():
        print(f"{key}={value:.0f}" if value > 100 else f"{key}={value:.3f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 400))
