"""Agent log ingestion: logs persisted per second, through the real router and registry.

Run: ``python -m bench.logs [agents] [logs per agent]``. Prints one ``name=value`` per
line.

The server side runs in this process: the embedded router, the router session and the
registry, which writes the logs in batches into PostgreSQL: a throw-away database on
``BENCH_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), or the
embedded server under ``.test-cache/pgdata`` when that does not answer.

The agents run in a child process (``python -m bench.logs --flood``), so that sending
does not take CPU from the server's event loop. Each agent is a WebSocket client with
its own agent JWT that sends ``agent_log`` frames exactly as a ``genai-protocol`` 2.x
agent flushes them before a reply (with ``invoked_by``). Every agent connects first;
the clock then runs from the signal to send to the last row committed, so
``logs_per_s`` is the rate at which logs are persisted, with the server as the
bottleneck. ``server_cpu_us_per_log`` is this process's CPU time over the same span,
per log: the cost of the path, steadier than a rate on a busy machine.

The registry alone, in the same run: the same logs told straight to a fresh registry as
the router session tells them (``registry_logs_per_s``, ``registry_cpu_us_per_log``);
the rest of ``server_cpu_us_per_log`` is the router and the session.

The baseline, measured in the same run on the same database: the same rows written
straight into PostgreSQL with asyncpg's ``copy_records_to_table``, in batches of the
run's mean batch size, one transaction each (``db_copy_logs_per_s``): what the database
takes with no server in front. ``ratio`` is ``logs_per_s`` over it.

``BENCH_PROFILE=<file>`` writes a cProfile of the server process over the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import jwt
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

import persistence
from actors.registry import RegistryActor, RegistryConfig, registry_spec
from actors.router import RouterConfig, router_children
from actors.session import AgentLogged, SessionConfig, router_session_spec
from persistence import AgentRepository, Log, UserRepository, utcnow
from runtime import ChildSpec, RestartIntensity, Strategy, Supervisor, open_actor_system

SECRET = "bench-secret-of-at-least-32-bytes-long"
BACKEND_KEY = "7a3fd399-3e48-46a0-ab7c-0eaf38020283::master_server_be"
SERVER = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
# Frames the router queues per connection before closing it (1013). The back-end's
# connection must hold a whole burst: with the router's default (1000) a flood closes it.
OUTBOX = int(os.environ.get("BENCH_OUTBOX", "200000"))
PROFILE = os.environ.get("BENCH_PROFILE")
CACHE = Path(__file__).resolve().parent.parent / ".test-cache"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _server_url() -> tuple[str, persistence.EmbeddedPostgres | None]:
    try:
        conn = await asyncpg.connect(SERVER, timeout=2)
        await conn.close()
        return persistence.to_async_url(SERVER), None
    except (OSError, asyncpg.PostgresError):
        cache = CACHE
        cache.mkdir(exist_ok=True)
        server = persistence.EmbeddedPostgres(cache / "pgdata")
        server.__enter__()
        return server.url(), server


@contextlib.asynccontextmanager
async def open_bench_database(prefix: str = "genai_bench") -> AsyncIterator[str]:
    """Create a throw-away database migrated to head for one run; yield its URL.

    It lives on ``BENCH_POSTGRES`` (or the embedded server) and is dropped at the end.
    """
    server_url, embedded = await _server_url()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        await persistence.upgrade_to_head(database_url)
        yield database_url
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded is not None:
            embedded.__exit__(None, None, None)


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(_plain(url))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


# -- the agents (child process) ---------------------------------------------------------


async def _flood() -> None:
    """Connect every agent, wait for ``go`` on stdin, send, report the seconds taken.

    The agents stay connected until the next line on stdin.
    """
    plan = json.loads(sys.stdin.readline())
    url, per_agent = plan["url"], plan["per_agent"]
    sockets = []
    frames = []
    for agent_id, token in plan["agents"]:
        sockets.append(await connect(url, additional_headers={"X-Custom-Authorization": token}))
        sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
        frames.append(
            [
                json.dumps(
                    {
                        "message_type": "agent_log",
                        "log_message": f"step {n} of the request",
                        "log_level": "info",
                        "agent_uuid": agent_id,
                        "request_id": rid,
                        "session_id": sid,
                        "invoked_by": f"caller:{agent_id}#1",
                    }
                )
                for n in range(per_agent)
            ]
        )
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    started = time.perf_counter()

    async def send(ws: Any, lines: list[str]) -> None:
        for line in lines:
            await ws.send(line)

    await asyncio.gather(*(send(ws, lines) for ws, lines in zip(sockets, frames, strict=True)))
    print(f"sent {time.perf_counter() - started}", flush=True)
    # Connected until the clock has stopped: disconnects are not part of the measure.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await asyncio.gather(*(ws.close() for ws in sockets))


# -- the server (this process) ----------------------------------------------------------


async def _add_agents(sessionmaker: Any, count: int) -> list[tuple[str, str]]:
    agents: list[tuple[str, str]] = []
    async with sessionmaker.begin() as db:
        user = await UserRepository(db).add("bench", "x")
        for n in range(count):
            agent_id = uuid.uuid4()
            claims = {"sub": str(agent_id), "exp": 253402300799, "user_id": str(user.id)}
            token = jwt.encode(claims, SECRET, algorithm="HS256")
            await AgentRepository(db).add(
                id=agent_id,
                name=f"agent_{n}",
                alias=f"agent_{n}_bench",
                description="",
                jwt=token,
                creator_id=user.id,
                input_parameters={},
            )
            agents.append((str(agent_id), token))
    return agents


async def run(database_url: str, agent_count: int, per_agent: int) -> dict[str, float]:
    engine = persistence.create_engine(database_url, pool_size=5, max_overflow=5)
    sessionmaker = persistence.create_sessionmaker(engine)
    agents = await _add_agents(sessionmaker, agent_count)
    port = _free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    router = Supervisor(
        [
            *router_children(RouterConfig(port=port, ping_interval=None, outbox_capacity=OUTBOX)),
            router_session_spec(SessionConfig(url, BACKEND_KEY, ping_interval=None)),
        ],
        strategy=Strategy.REST_FOR_ONE,
        intensity=RestartIntensity(10, 60.0),
    )
    total = agent_count * per_agent
    flooder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.logs",
        "--flood",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert flooder.stdin is not None and flooder.stdout is not None
    profile = cProfile.Profile() if PROFILE else None
    async with open_actor_system(
        registry_spec(RegistryConfig(SECRET), sessionmaker),
        ChildSpec("router", lambda: router),
    ) as system:
        registry = system.ref_of("registry")._cell.instance
        assert isinstance(registry, RegistryActor)
        plan = {"url": url, "per_agent": per_agent, "agents": agents}
        flooder.stdin.write(json.dumps(plan).encode() + b"\n")
        await flooder.stdin.drain()
        assert await flooder.stdout.readline() == b"ready\n"
        if profile is not None:
            profile.enable()
        cpu, started = time.process_time(), time.perf_counter()
        flooder.stdin.write(b"go\n")
        await flooder.stdin.drain()
        with anyio.move_on_after(120):
            while registry.statistics().written < total:  # noqa: ASYNC110
                await anyio.sleep(0.002)
        done, cpu = time.perf_counter(), time.process_time() - cpu
        if profile is not None and PROFILE:
            profile.disable()
            profile.dump_stats(PROFILE)
        sent = float((await flooder.stdout.readline()).split()[1])
        flooder.stdin.write(b"close\n")
        await flooder.stdin.drain()
        await flooder.wait()
        info = system.snapshot().find("router.session")
        restarts = info.restarts if info is not None else -1
        stats = registry.statistics()
    async with sessionmaker() as db:
        stored = await db.scalar(select(func.count()).select_from(Log))
    mean_batch = stats.written / max(1, stats.batches)
    alone, alone_cpu = await _registry_alone(sessionmaker, agents, per_agent)
    await engine.dispose()
    floor = await _copy_floor(database_url, total, max(1, round(mean_batch)))
    elapsed = done - started
    return {
        "agents": agent_count,
        "logs_sent": total,
        "logs_stored": float(stored or 0),
        "send_seconds": sent,
        "total_seconds": elapsed,
        "logs_per_s": total / elapsed,
        "server_cpu_us_per_log": cpu / total * 1e6,
        "batches": stats.batches,
        "mean_batch": mean_batch,
        "dropped": stats.dropped + stats.overflowed + stats.failed,
        "session_restarts": restarts,
        "router_outbox": OUTBOX,
        "registry_logs_per_s": alone,
        "registry_cpu_us_per_log": alone_cpu,
        "db_copy_logs_per_s": floor,
        "ratio": total / elapsed / floor,
    }


async def _registry_alone(
    sessionmaker: Any, agents: list[tuple[str, str]], per_agent: int
) -> tuple[float, float]:
    """Return logs per second and CPU microseconds per log of the registry by itself."""
    events = []
    for agent_id, _ in agents:
        sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
        events += [
            AgentLogged(agent_id, sid, rid, "info", f"step {n} of the request", "caller#1")
            for n in range(per_agent)
        ]
    async with open_actor_system(
        registry_spec(RegistryConfig(SECRET), sessionmaker, session=None)
    ) as system:
        ref = system.ref_of("registry")
        registry = ref._cell.instance
        assert isinstance(registry, RegistryActor)
        cpu, started = time.process_time(), time.perf_counter()
        for event in events:
            await ref.tell(event)
        with anyio.move_on_after(120):
            while registry.statistics().written < len(events):  # noqa: ASYNC110
                await anyio.sleep(0.002)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(events) / elapsed, cpu / len(events) * 1e6


async def _copy_floor(database_url: str, total: int, batch: int) -> float:
    """Return the rows per second COPY writes into ``logs``, ``batch`` rows a transaction."""
    conn = await asyncpg.connect(_plain(database_url))
    try:
        sid, rid, agent = uuid.uuid4(), uuid.uuid4(), str(uuid.uuid4())
        now = utcnow()
        rows = [
            (sid, rid, agent, f"step {n} of the request", "info", now, now) for n in range(total)
        ]
        columns = [
            "session_id", "request_id", "agent_id", "message", "log_level",
            "created_at", "updated_at",
        ]  # fmt: skip
        started = time.perf_counter()
        for start in range(0, total, batch):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "logs", records=rows[start : start + batch], columns=columns
                )
        return total / (time.perf_counter() - started)
    finally:
        await conn.close()


async def main(agent_count: int, per_agent: int) -> None:
    async with open_bench_database() as database_url:
        results = await run(database_url, agent_count, per_agent)
    for key, value in results.items():
        print(
            f"{key}={value:.0f}"
            if float(value).is_integer() or value > 100
            else f"{key}={value:.3f}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--flood"]:
        asyncio.run(_flood())
    else:
        args = [int(a) for a in sys.argv[1:3]]
        asyncio.run(main(*(args + [50, 2000][len(args) :])))
