"""Agent log ingestion: logs persisted per second, through the real router and registry.

Run: ``python -m bench.logs [agents] [logs per agent]``. Prints one ``name=value`` per
line.

Each agent is a WebSocket client with its own agent JWT that sends ``agent_log`` frames
exactly as a ``genai-protocol`` 2.x agent flushes them before a reply (with
``invoked_by``). The embedded router forwards them to the router session, which tells
the registry, which writes them in batches into PostgreSQL: a throw-away database on
``BENCH_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``), or the
embedded server under ``.test-cache/pgdata`` when that does not answer. The clock runs
from the first frame sent to the last row committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import anyio
import asyncpg
import jwt
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from websockets.asyncio.client import connect

import persistence
from actors.registry import RegistryActor, RegistryConfig, registry_spec
from actors.router import RouterConfig, router_children
from actors.session import SessionConfig, router_session_spec
from persistence import AgentRepository, Log, UserRepository
from runtime import ChildSpec, RestartIntensity, Strategy, Supervisor, open_actor_system

SECRET = "bench-secret-of-at-least-32-bytes-long"
BACKEND_KEY = "7a3fd399-3e48-46a0-ab7c-0eaf38020283::master_server_be"
SERVER = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
AGENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
# Frames the router queues per connection before closing it (1013). The back-end's
# connection must hold a whole burst: with the router's default (1000) a flood closes it.
OUTBOX = int(os.environ.get("BENCH_OUTBOX", "200000"))
CACHE = Path(__file__).resolve().parent.parent / ".test-cache"
PER_AGENT = int(sys.argv[2]) if len(sys.argv) > 2 else 2000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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


async def _admin(url: str, statement: str) -> None:
    conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _agent(url: str, agent_id: uuid.UUID, token: str, count: int) -> None:
    sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    async with connect(url, additional_headers={"X-Custom-Authorization": token}) as ws:
        for n in range(count):
            frame = {
                "message_type": "agent_log",
                "log_message": f"step {n} of the request",
                "log_level": "info",
                "agent_uuid": str(agent_id),
                "request_id": rid,
                "session_id": sid,
                "invoked_by": f"caller:{agent_id}#1",
            }
            await ws.send(json.dumps(frame))
        await ws.close()


async def run(database_url: str) -> dict[str, float]:
    engine = persistence.create_engine(database_url, pool_size=5, max_overflow=5)
    sessionmaker = persistence.create_sessionmaker(engine)
    agents: list[tuple[uuid.UUID, str]] = []
    async with sessionmaker.begin() as db:
        user = await UserRepository(db).add("bench", "x")
        for n in range(AGENTS):
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
            agents.append((agent_id, token))
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
    total = AGENTS * PER_AGENT
    async with open_actor_system(
        registry_spec(RegistryConfig(SECRET), sessionmaker),
        ChildSpec("router", lambda: router),
    ) as system:
        registry = system.ref_of("registry")._cell.instance
        assert isinstance(registry, RegistryActor)
        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for agent_id, token in agents:
                tg.start_soon(_agent, url, agent_id, token, PER_AGENT)
        sent = time.perf_counter()
        with anyio.move_on_after(60):
            while registry.statistics().written < total:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        info = system.snapshot().find("router.session")
        restarts = info.restarts if info is not None else -1
        done = time.perf_counter()
        stats = registry.statistics()
    async with sessionmaker() as db:
        stored = await db.scalar(select(func.count()).select_from(Log))
    await engine.dispose()
    return {
        "agents": AGENTS,
        "logs_sent": total,
        "logs_stored": float(stored or 0),
        "send_seconds": sent - started,
        "total_seconds": done - started,
        "logs_per_second": total / (done - started),
        "batches": stats.batches,
        "mean_batch": total / max(1, stats.batches),
        "dropped": stats.dropped + stats.overflowed + stats.failed,
        "session_restarts": restarts,
        "router_outbox": OUTBOX,
    }


async def main() -> None:
    server_url, embedded = await _server_url()
    name = f"genai_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    database_url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        await persistence.upgrade_to_head(database_url)
        results = await run(database_url)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if embedded is not None:
            embedded.__exit__(None, None, None)
    for key, value in results.items():
        print(
            f"{key}={value:.0f}"
            if float(value).is_integer() or value > 100
            else f"{key}={value:.3f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
