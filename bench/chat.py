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

Three phases, each for the chat and then the floor: 1 session and 20 sessions in a
closed loop (each sends its next message as soon as its reply is in: the rate the path
can carry; the latency then is mostly the queue of the other 19 sessions, N times the
CPU cost of a turn), and ``paced``: 20 sessions that pause between a reply and their
next message (exponential, mean ``THINK``), as people do, so that latency shows what
the path adds rather than how long the queue is. ``paced_p50_overhead_ms`` and
``paced_p99_overhead_ms`` are its chat percentiles minus the floor's, paced alike.

``builtin_1`` and ``builtin_20``, before the others: the same chat turns answered by the
built-in master agent (``MASTER_AGENT=builtin``) instead, its model a fake
OpenAI-compatible provider that answers at once (a call of the echo agent, then a text
once the agent's output is in), so a turn is the path above plus the built-in master's
history and tool reads, two model calls over HTTP and one agent call through the router.
``builtin_server_cpu_ms_per_turn_*`` is its server CPU per turn; next to it,
``builtin_cpu_budget_ms_*`` is the external master's turn plus the agent call itself
(``server_cpu_ms_per_turn`` + ``floor_server_cpu_ms`` at as many sessions): the target
is to stay under it. ``builtin_http_floor_ms_httpx2`` and
``builtin_http_floor_ms_provider_transport``: the floor of its two model calls, the same
two exchanges with the fake provider per turn made from the server process by a bare
``httpx2`` client (no ``openai`` client, no master) on ``httpx2``'s transport and on the
built-in master's. The external scripted master connects after those phases and takes
``master_server_ml`` over (the router routes it to its newest connection).

``events_1`` and ``events_20``: the same closed-loop chat through the external master
with sockets that watch their turns (``events=1``: four ``turn_event`` frames a turn);
``events_cpu_ratio_*`` is its server CPU per turn over the unwatched phase's, measured
right before it (target: at most 1.2).

The master, the echo agent, the fake provider and the clients run in a child process (``python -m
bench.chat --drive``), so that their CPU is not the server's. ``server_cpu_ms_per_turn``
is the server process's CPU time over a chat phase per turn (``floor_server_cpu_ms``:
the same over a floor phase): the cost of the path, steadier than a rate on a busy
machine. With one event loop, a closed loop of N sessions waits about N times that per
turn. ``BENCH_PROFILE=<file>`` writes a cProfile of the server over the 20-session chat
phase (``BENCH_PROFILE_PHASE=builtin_20``: the built-in master's).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import httpx2
import openai
from websockets.asyncio.client import ClientConnection, connect

from actors.master._http import ProviderTransport
from persistence import DatabaseSettings
from web import Settings
from web._server import open_server

from .logs import _free_port, open_bench_database

PROFILE = os.environ.get("BENCH_PROFILE")
PROFILE_PHASE = os.environ.get("BENCH_PROFILE_PHASE", "chat_20")
THINK = 0.2
"""Mean pause (seconds) of a paced session between a reply and its next message."""

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


def _completion(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def _model_reply(request: dict[str, Any]) -> dict[str, Any]:
    """The fake provider: call the first tool, then answer with what it returned."""
    last = request["messages"][-1]
    if last["role"] == "tool" or not request.get("tools"):
        return _completion({"role": "assistant", "content": f"done: {last['content']}"})
    call = {
        "id": "call_bench",
        "type": "function",
        "function": {"name": request["tools"][0]["function"]["name"], "arguments": "{}"},
    }
    return _completion({"role": "assistant", "content": None, "tool_calls": [call]})


async def _provider(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One keep-alive HTTP/1.1 connection of the fake OpenAI-compatible provider."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = json.dumps(_model_reply(json.loads(await reader.readexactly(length))))
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body.encode()
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()


ECHO_SCHEMA = {
    "type": "function",
    "function": {
        "name": "echo",
        "description": "Echoes",
        "parameters": {"type": "object", "properties": {}},
    },
}


async def _wait_active(base: str, token: str, agent_id: str) -> None:
    """Wait until the back-end lists the agent as active (its registration is applied)."""
    async with httpx.AsyncClient(base_url=base) as http:
        for _ in range(500):
            listed = await http.get(
                "/api/agents/active",
                params={"agent_type": "all"},
                headers={"Authorization": f"Bearer {token}"},
            )
            if agent_id in {i["id"] for i in listed.json()["active_connections"]}:
                return
            await asyncio.sleep(0.02)
    raise TimeoutError("the echo agent was never listed as active")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000


async def _think(mean: float) -> None:
    # Exponential pauses: the sessions' messages arrive at random, not in lockstep.
    if mean > 0:
        await asyncio.sleep(random.expovariate(1 / mean))


async def _chat(
    http_base: str,
    token: str,
    sessions: int,
    turns: int,
    think: float = 0.0,
    *,
    events: bool = False,
) -> list[float]:
    host = http_base.removeprefix("http://")
    message = json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"})
    watch = "&events=1" if events else ""

    async def one() -> list[float]:
        url = f"ws://{host}/frontend/ws?token={token}&session_id={uuid.uuid4()}{watch}"
        samples = []
        async with connect(url, compression=None) as ws:
            for _ in range(turns):
                await _think(think)
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


async def _floor(
    router_url: str, caller: str, agent_id: str, sessions: int, turns: int, think: float = 0.0
) -> list[float]:
    async def one() -> list[float]:
        # As the master calls an agent: the router takes send() sockets of a master key.
        key = f"{caller}:{uuid.uuid4().hex}:{agent_id}"
        samples = []
        frame = json.dumps(
            {"message_type": "agent_invoke", "agent_uuid": agent_id, "request_payload": {}}
        )
        async with connect(
            router_url, additional_headers={"x-custom-invoke-key": key}, compression=None
        ) as ws:
            for _ in range(turns):
                await _think(think)
                started = time.perf_counter()
                await ws.send(frame)
                await ws.recv()
                samples.append(time.perf_counter() - started)
        return samples

    results = await asyncio.gather(*(one() for _ in range(sessions)))
    return [s for r in results for s in r]


async def _drive() -> None:
    """The load generator (child process): the master, the echo agent and the clients.

    Reads the plan from stdin, prints the samples of every phase as one JSON line.
    """
    plan = json.loads(sys.stdin.readline())
    router_url, base, token = plan["router_url"], plan["base"], plan["token"]
    agent_id, turns = plan["agent_id"], plan["turns"]
    provider = await asyncio.start_server(_provider, "127.0.0.1", plan["provider_port"])
    phases: dict[str, Any] = {}
    async with (
        provider,
        connect(
            router_url, additional_headers={"X-Custom-Authorization": plan["agent_jwt"]}
        ) as agent,
    ):
        register = {
            "agent_name": "echo",
            "agent_description": "Echoes",
            "agent_input_schema": ECHO_SCHEMA,
        }
        await agent.send(
            json.dumps({"message_type": "agent_register", "request_payload": register})
        )
        agent_task = asyncio.create_task(_answer(agent, "echo"))
        await _wait_active(base, token, agent_id)
        # The built-in master answers first: it holds master_server_ml since the start.
        await _chat(base, token, 4, 10)  # warm-up
        for name, sessions in (("1", 1), ("20", 20)):
            count = turns if sessions == 1 else max(20, turns // 4)
            print(f"ready builtin {name}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            started = time.perf_counter()
            phases[f"builtin_{name}"] = {"chat": await _chat(base, token, sessions, count)}
            phases[f"builtin_{name}"]["chat_seconds"] = time.perf_counter() - started
        # The server makes the bare exchanges itself; the fake provider answers them.
        print("ready http 1", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        async with connect(
            router_url, additional_headers={"API-KEY": plan["master_key"]}
        ) as master:
            await _external_phases(master, plan, phases)
        agent_task.cancel()
    print(json.dumps(phases), flush=True)


async def _external_phases(
    master: ClientConnection, plan: dict[str, Any], phases: dict[str, Any]
) -> None:
    """The phases through the external scripted master, which has taken the turns over."""
    router_url, base, token = plan["router_url"], plan["base"], plan["token"]
    agent_id, turns = plan["agent_id"], plan["turns"]
    answering = asyncio.create_task(_answer(master, INSTANT))
    await asyncio.sleep(0.2)
    await _chat(base, token, 4, 20)  # warm-up
    await _floor(router_url, plan["master_key"], agent_id, 4, 20)
    for name, sessions, think in (("1", 1, 0.0), ("20", 20, 0.0), ("paced", 20, THINK)):
        count = turns if sessions == 1 else max(20, turns // 4)
        phase: dict[str, Any] = {}
        kinds = ("chat", "floor") if name == "paced" else ("chat", "events", "floor")
        for kind in kinds:
            # The server measures its CPU time from our signal to the next one.
            print(f"ready {kind} {name}", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            started = time.perf_counter()
            if kind in ("chat", "events"):
                phase[kind] = await _chat(
                    base, token, sessions, count, think, events=kind == "events"
                )
            else:
                phase[kind] = await _floor(
                    router_url, plan["master_key"], agent_id, sessions, count, think
                )
            phase[f"{kind}_seconds"] = time.perf_counter() - started
        phases[name] = phase
    print("ready end 0", flush=True)
    answering.cancel()


def _turn_bodies() -> tuple[bytes, bytes]:
    """The two request bodies of a built-in turn: the tool call's, then the answer's."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "hi"},
    ]
    first = {"model": "m", "messages": messages, "tools": [ECHO_SCHEMA]}
    call = _model_reply(first)["choices"][0]["message"]
    messages = [
        *messages,
        call,
        {"role": "tool", "tool_call_id": "call_bench", "content": '"echo"'},
    ]
    second = {"model": "m", "messages": messages, "tools": [ECHO_SCHEMA]}
    return json.dumps(first).encode(), json.dumps(second).encode()


async def _bare_exchanges(port: int, turns: int) -> dict[str, float]:
    """The floor of a built-in turn's two model calls: the same two exchanges with the
    fake provider made by a bare ``httpx2`` client (no ``openai`` client), on
    ``httpx2``'s own transport and on the built-in master's; server CPU per turn (ms).
    """
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"authorization": "Bearer sk", "content-type": "application/json"}
    bodies = _turn_bodies()
    transports: dict[str, httpx2.AsyncBaseTransport | None] = {
        "httpx2": None,
        "provider_transport": ProviderTransport(limits=openai.DEFAULT_CONNECTION_LIMITS),
    }
    results: dict[str, float] = {}
    for name, transport in transports.items():
        async with httpx2.AsyncClient(transport=transport, timeout=None) as http:
            for _ in range(20):  # warm-up: the connection, the first calls
                (await http.post(url, content=bodies[0], headers=headers)).json()
            started = time.process_time()
            for _ in range(turns):
                for body in bodies:
                    (await http.post(url, content=body, headers=headers)).json()
            results[name] = (time.process_time() - started) * 1000 / turns
    return results


async def run(database_url: str, turns: int) -> dict[str, float]:
    settings = Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=_free_port(),
        ROUTER_HOST="127.0.0.1",
        ROUTER_PORT=_free_port(),
        FILES_DIR=Path(tempfile.mkdtemp()) / "files",
        BCRYPT_ROUNDS=4,
        SHUTDOWN_GRACE_SECONDS=0.5,
        MASTER_AGENT="builtin",
    )
    provider_port = _free_port()
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
            # The external master ignores the provider; the built-in one calls the fake.
            metadata = {"base_url": f"http://127.0.0.1:{provider_port}/v1"}
            provider = {"name": "openai", "api_key": "sk", "metadata": metadata}
            (
                await http.post("/api/llm/model/provider", json=provider, headers=auth)
            ).raise_for_status()
            config = {"name": "gpt", "model": "m", "provider": "openai"}
            (await http.post("/api/llm/model/config", json=config, headers=auth)).raise_for_status()
            echo = {"name": "echo", "description": "Echoes", "input_parameters": {}}
            registered = await http.post("/api/agents/register", json=echo, headers=auth)
            agent = registered.raise_for_status().json()
        driver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.chat",
            "--drive",
            limit=2**26,  # the samples come back as one line
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert driver.stdin is not None and driver.stdout is not None
        plan = {
            "router_url": server.router_url,
            "base": base,
            "token": token,
            "master_key": settings.MASTER_AGENT_API_KEY,
            "agent_id": agent["id"],
            "agent_jwt": agent["jwt"],
            "provider_port": provider_port,
            "turns": turns,
        }
        driver.stdin.write(json.dumps(plan).encode() + b"\n")
        await driver.stdin.drain()
        cpu: dict[str, float] = {}
        profile = cProfile.Profile() if PROFILE else None
        running, started = "", 0.0
        while True:
            _, kind, sessions = (await driver.stdout.readline()).decode().split()
            now = time.process_time()
            if running:
                cpu[running] = now - started
            if running == PROFILE_PHASE and profile is not None and PROFILE:
                profile.disable()
                profile.dump_stats(PROFILE)
            if kind == "end":
                break
            if kind == "http":
                running = ""
                bare = await _bare_exchanges(provider_port, turns)
                for name, ms in bare.items():
                    results[f"builtin_http_floor_ms_{name}"] = ms
                driver.stdin.write(b"go\n")
                await driver.stdin.drain()
                continue
            running, started = f"{kind}_{sessions}", time.process_time()
            if running == PROFILE_PHASE and profile is not None:
                profile.enable()
            driver.stdin.write(b"go\n")
            await driver.stdin.drain()
        phases = json.loads(await driver.stdout.readline())
        assert await driver.wait() == 0
    for sessions, phase in phases.items():
        if sessions.startswith("builtin_"):
            chat = phase["chat"]
            c50, c99 = _percentiles(chat)
            results |= {
                f"chat_turns_per_s_{sessions}": len(chat) / phase["chat_seconds"],
                f"chat_p50_ms_{sessions}": c50,
                f"chat_p99_ms_{sessions}": c99,
                f"{sessions.replace('_', '_server_cpu_ms_per_turn_')}": (
                    cpu[sessions] * 1000 / len(chat)
                ),
            }
            continue
        chat, floor = phase["chat"], phase["floor"]
        (c50, c99), (f50, f99) = _percentiles(chat), _percentiles(floor)
        results |= {
            f"chat_turns_per_s_{sessions}": len(chat) / phase["chat_seconds"],
            f"chat_p50_ms_{sessions}": c50,
            f"chat_p99_ms_{sessions}": c99,
            f"floor_turns_per_s_{sessions}": len(floor) / phase["floor_seconds"],
            f"floor_p50_ms_{sessions}": f50,
            f"floor_p99_ms_{sessions}": f99,
            f"server_cpu_ms_per_turn_{sessions}": cpu[f"chat_{sessions}"] * 1000 / len(chat),
            f"floor_server_cpu_ms_{sessions}": cpu[f"floor_{sessions}"] * 1000 / len(floor),
        }
        if "events" in phase:
            watched = phase["events"]
            e50, e99 = _percentiles(watched)
            per_turn = cpu[f"events_{sessions}"] * 1000 / len(watched)
            results |= {
                f"events_turns_per_s_{sessions}": len(watched) / phase["events_seconds"],
                f"events_p50_ms_{sessions}": e50,
                f"events_p99_ms_{sessions}": e99,
                f"events_server_cpu_ms_per_turn_{sessions}": per_turn,
                f"events_cpu_ratio_{sessions}": (
                    per_turn / results[f"server_cpu_ms_per_turn_{sessions}"]
                ),
            }
    for sessions in ("1", "20"):
        results[f"builtin_cpu_budget_ms_{sessions}"] = (
            results[f"server_cpu_ms_per_turn_{sessions}"]
            + results[f"floor_server_cpu_ms_{sessions}"]
        )
    results["p50_overhead_ms"] = results["chat_p50_ms_20"] - results["floor_p50_ms_20"]
    results["p99_overhead_ms"] = results["chat_p99_ms_20"] - results["floor_p99_ms_20"]
    results["paced_p50_overhead_ms"] = results["chat_p50_ms_paced"] - results["floor_p50_ms_paced"]
    results["paced_p99_overhead_ms"] = results["chat_p99_ms_paced"] - results["floor_p99_ms_paced"]
    return results


async def main(turns: int) -> None:
    async with open_bench_database() as database_url:
        results = await run(database_url, turns)
    for key, value in results.items():
        print(f"{key}={value:.0f}" if value > 100 else f"{key}={value:.3f}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--drive"]:
        asyncio.run(_drive())
    else:
        asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 400))
