"""Agent registrations: how fast connecting agents become active, and a reconnect storm.

Run: ``python -m bench.agents [agents ...]`` (default ``1000 5000``). Prints one
``name=value`` per line.

The server side runs in this process as ``serve`` wires it: the embedded router, the
router session on it in-process (`LocalConnector`) and the registry, against a
throw-away database on ``BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``, else the embedded server under
``.test-cache/pgdata``), as ``bench.logs`` does.

The agents run in a child process (``python -m bench.agents --agents``): raw WebSocket
clients, each with its own agent JWT, sending ``agent_register`` as soon as it is open,
as a ``genai-protocol`` agent does. For each count ``n``:

- ``active_seconds_<n>``: from the signal to connect to every agent active in the
  database (the registry's committed registrations, checked with a count of the rows);
  ``registrations_per_s_<n>`` is ``n`` over it, ``connect_seconds_<n>`` the time the
  child took to open every socket (``lag_seconds_<n>`` is the rest: from the last
  socket open to the last agent active), ``server_cpu_ms_per_agent_<n>`` this process's CPU
  over the span, per agent. Then every socket closes and the agents turn inactive.
- At the largest count, the storm: every agent connected and active, the child drops
  every socket at once (no close handshake, as a killed process) and reconnects them
  all. ``storm_agree_seconds`` runs from the drop to the moment the routing table (one
  registered connection per agent), the connection actors (one per socket) and the
  database (every agent active, no agent event pending) agree; ``storm_agreed`` is 0
  when they did not within 60 s, and ``storm_*`` show where each stood.

Every figure above is measured twice, by two servers in turn: first with the router
trusting the agents' tokens (the names above), then with the token check ``serve``
wires in (`actors.registry.agent_verifier`: signatures, then the agents' rows), under
the same names prefixed ``verified_`` (``BENCH_VERIFIED_ONLY=1`` runs that one alone).
As ``serve`` does once ready, each server's startup heap is frozen out of the cyclic
collector (``gc.freeze()``) before the first count. ``BENCH_PROFILE=<file>`` writes a
cProfile of the verified server over each count's connect, to ``<file>.<n>``.

Baselines in the same run, on the same rows: the registry alone applying the same
registrations told straight to it (``registry_registrations_per_s``), and one raw
``UPDATE`` marking the same rows active (``db_update_rows_per_s``). ``ratio``
(``verified_ratio``) is ``registrations_per_s`` (``verified_registrations_per_s``) at
the largest count over the registry alone's rate.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Any

import anyio
import asyncpg
import jwt
from websockets.asyncio.client import ClientConnection, connect

import persistence
from actors.registry import RegistryActor, RegistryConfig, agent_verifier, registry_spec
from actors.router import ApiKeys, RouterConfig, RouterHub, router_children
from actors.session import (
    AgentRegistered,
    LocalConnector,
    SessionConfig,
    router_session_spec,
)
from persistence import bound_engine
from runtime import (
    ActorSystem,
    ChildSpec,
    RestartIntensity,
    Strategy,
    Supervisor,
    SupervisorInfo,
    open_actor_system,
)

from .logs import _free_port, _plain, open_bench_database

SECRET = "bench-secret-of-at-least-32-bytes-long"
WAIT = 60.0
SCHEMA = {
    "type": "function",
    "function": {
        "name": "echo",
        "description": "Echoes text",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string", "description": "text to echo"}},
            "required": ["text"],
        },
    },
}
# Sockets the child opens at once (a connect storm of thousands would only measure the
# kernel's accept queue).
CONNECTING = int(os.environ.get("BENCH_CONNECTING", "256"))
PROFILE = os.environ.get("BENCH_PROFILE")


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- the agents (child process) ---------------------------------------------------------


async def _agents() -> None:
    """Obey one command a line on stdin; answer each with one line.

    ``connect <a> <b>``: open the sockets of agents ``a`` to ``b`` and register them;
    ``close``: close every socket; ``storm``: drop every socket at once, then open
    them again; ``quit``.
    """
    _raise_fd_limit()
    plan = json.loads(sys.stdin.readline())
    url, agents = plan["url"], plan["agents"]
    sockets: dict[int, ClientConnection] = {}
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECTING)
    failures = 0

    async def open_one(n: int) -> None:
        nonlocal failures
        token = agents[n][1]
        register = json.dumps(
            {
                "message_type": "agent_register",
                "request_payload": {
                    "agent_name": f"bench agent {n}",
                    "agent_description": "Echoes text",
                    "agent_input_schema": {**SCHEMA, "function": {**SCHEMA["function"]}},
                },
            }
        )
        for attempt in range(20):
            try:
                async with gate:
                    ws = await connect(
                        url,
                        additional_headers={"X-Custom-Authorization": token},
                        ping_interval=None,
                        open_timeout=30,
                    )
                    await ws.send(register)
                sockets[n] = ws
                return
            except Exception:  # refused, reset or timed out under the storm: again
                failures += 1
                await asyncio.sleep(0.05 * (attempt + 1))

    async def open_all(indices: Iterable[int]) -> float:
        started = time.perf_counter()
        await asyncio.gather(*(open_one(n) for n in indices))
        return time.perf_counter() - started

    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "connect":
            seconds = await open_all(range(int(line[1]), int(line[2])))
            print(f"connected {seconds} {failures}", flush=True)
        elif line[0] == "close":
            await asyncio.gather(*(ws.close() for ws in sockets.values()))
            sockets.clear()
            print("closed", flush=True)
        elif line[0] == "storm":
            indices = sorted(sockets)
            for ws in sockets.values():
                ws.transport.abort()
            sockets.clear()
            seconds = await open_all(indices)
            print(f"reconnected {seconds} {failures}", flush=True)
    await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)


# -- the server (this process) ----------------------------------------------------------


async def _add_agents(database_url: str, count: int) -> list[tuple[str, str]]:
    """Add ``count`` inactive agents of one user in one statement; return ids and JWTs."""
    conn = await asyncpg.connect(_plain(database_url))
    try:
        user_id = uuid.uuid4()
        await conn.execute(
            "INSERT INTO users (id, username, password, created_at, updated_at) "
            "VALUES ($1, 'bench', 'x', now(), now())",
            user_id,
        )
        ids = [uuid.uuid4() for _ in range(count)]
        tokens = [
            jwt.encode(
                {"sub": str(i), "exp": 253402300799, "user_id": str(user_id)},
                SECRET,
                algorithm="HS256",
            )
            for i in ids
        ]
        await conn.execute(
            """
            INSERT INTO agents (id, name, alias, description, jwt, creator_id,
                                input_parameters, is_active, created_at, updated_at,
                                last_invoked_at)
            SELECT r.id, 'agent_' || r.n, 'agent_' || r.n || '_bench', '', r.jwt, $3,
                   '{}'::json, false, now(), now(), now()
              FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS r(id, jwt, n)
            """,
            ids,
            tokens,
            user_id,
        )
    finally:
        await conn.close()
    return [(str(i), t) for i, t in zip(ids, tokens, strict=True)]


class _Child:
    """The agents' process, driven a line at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.stdout = process.stdout

    async def command(self, line: str) -> None:
        self.stdin.write(line.encode() + b"\n")
        await self.stdin.drain()

    async def answer(self) -> list[str]:
        return (await self.stdout.readline()).decode().split()


class _Server:
    """Handles on the server side's parts, for polling."""

    def __init__(self, system: ActorSystem, database_url: str) -> None:
        self.system = system
        self.database_url = database_url
        registry = system.ref_of("registry")._cell.instance
        hub = system.ref_of("router.hub")._cell.instance
        assert isinstance(registry, RegistryActor) and isinstance(hub, RouterHub)
        self.registry = registry
        self.hub = hub
        self.db: Any = None

    async def active(self) -> int:
        count: int = await self.db.fetchval("SELECT count(*) FROM agents WHERE is_active")
        return count

    def connection_actors(self) -> int:
        info = self.system.snapshot().find("router.connections")
        return len(info.children) if isinstance(info, SupervisorInfo) else -1

    async def wait_registered(self, target: int) -> bool:
        """Wait until the registry has committed ``target`` registrations in all."""
        with anyio.move_on_after(WAIT):
            while self.registry.statistics().registered < target:  # noqa: ASYNC110
                await anyio.sleep(0.002)
            return True
        return False

    async def wait_active(self, count: int) -> bool:
        with anyio.move_on_after(WAIT):
            while await self.active() != count:  # noqa: ASYNC110 - polls the database
                await anyio.sleep(0.01)
            return True
        return False


async def _phase(
    server: _Server, child: _Child, n: int, profile: cProfile.Profile | None = None
) -> dict[str, float]:
    """Connect ``n`` agents, time them to all active, then close them."""
    base = server.registry.statistics().registered
    cpu, started = time.process_time(), time.perf_counter()
    if profile is not None:
        profile.enable()
    await child.command(f"connect 0 {n}")
    ok = await server.wait_registered(base + n)
    if profile is not None:
        profile.disable()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    answer = await child.answer()
    active = await server.active()
    await child.command("close")
    await child.answer()
    await server.wait_active(0)
    return {
        f"connect_seconds_{n}": float(answer[1]),
        f"active_seconds_{n}": elapsed if ok else float("inf"),
        # From the last socket open to the last agent active: the registrations' own lag.
        f"lag_seconds_{n}": elapsed - float(answer[1]) if ok else float("inf"),
        f"registrations_per_s_{n}": n / elapsed if ok else 0.0,
        f"server_cpu_ms_per_agent_{n}": cpu / n * 1e3,
        f"active_after_{n}": active,
    }


async def _storm(server: _Server, child: _Child, n: int) -> dict[str, float]:
    """Drop ``n`` connected agents at once and reconnect them; time until all agree."""
    base = server.registry.statistics().registered
    await child.command(f"connect 0 {n}")
    await child.answer()
    await server.wait_registered(base + n)
    steady = server.hub.statistics()
    actors = server.connection_actors()
    stats = server.registry.statistics()
    cpu, started = time.process_time(), time.perf_counter()
    await child.command("storm")

    async def agreed() -> bool:
        now = server.registry.statistics()
        table = server.hub.statistics()
        return (
            now.registered >= stats.registered + n
            and now.pending_events == 0
            and table.registered_agents == n
            and table.connections == steady.connections
            and await server.active() == n
            and server.connection_actors() == actors
        )

    ok = False
    with anyio.move_on_after(WAIT):
        while not await agreed():  # noqa: ASYNC110 - polls three places
            await anyio.sleep(0.02)
        ok = True
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    answer = await child.answer()
    table = server.hub.statistics()
    after = server.registry.statistics()
    results = {
        "storm_agents": n,
        "storm_agreed": float(ok),
        "storm_agree_seconds": elapsed if ok else float("inf"),
        "storm_reconnect_seconds": float(answer[1]),
        "storm_table_registered": table.registered_agents,
        "storm_table_connections": table.connections - (steady.connections - n),
        "storm_connection_actors": server.connection_actors() - (actors - n),
        "storm_db_active": await server.active(),
        "storm_registered": after.registered - stats.registered,
        "storm_unregistered": after.unregistered - stats.unregistered,
        "storm_server_cpu_ms_per_agent": cpu / n * 1e3,
    }
    await child.command("close")
    await child.answer()
    await server.wait_active(0)
    return results


async def _registry_alone(sessionmaker: Any, agents: list[tuple[str, str]]) -> tuple[float, float]:
    """Return registrations per second of a fresh registry told them straight, and the
    rows per second of one raw UPDATE marking the same rows active."""
    events = [
        AgentRegistered(agent_id, token, f"bench agent {n}", "Echoes text", SCHEMA)
        for n, (agent_id, token) in enumerate(agents)
    ]
    async with open_actor_system(
        registry_spec(RegistryConfig(SECRET), sessionmaker, session=None)
    ) as system:
        ref = system.ref_of("registry")
        registry = ref._cell.instance
        assert isinstance(registry, RegistryActor)
        with anyio.fail_after(WAIT):
            while registry.statistics().pending_events:  # noqa: ASYNC110 - the reset
                await anyio.sleep(0.002)
        started = time.perf_counter()
        for event in events:
            await ref.tell(event)
        with anyio.fail_after(WAIT):
            while registry.statistics().registered < len(events):  # noqa: ASYNC110
                await anyio.sleep(0.002)
        alone = len(events) / (time.perf_counter() - started)
    async with persistence.open_driver_connection(bound_engine(sessionmaker)) as conn:
        await conn.execute("UPDATE agents SET is_active = false")
        ids = [uuid.UUID(a) for a, _ in agents]
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(
                "UPDATE agents SET is_active = true, updated_at = now() WHERE id = ANY($1)", ids
            )
        raw = len(ids) / (time.perf_counter() - started)
        await conn.execute("UPDATE agents SET is_active = false")
    return alone, raw


async def run(database_url: str, sizes: list[int]) -> dict[str, float]:
    """Measure every count without the token check, then with it (``verified_*``)."""
    _raise_fd_limit()
    largest = max(sizes)
    agents = await _add_agents(database_url, largest)
    engine = persistence.create_engine(database_url, pool_size=5, max_overflow=5)
    sessionmaker = persistence.create_sessionmaker(engine)
    results: dict[str, float] = {}
    if not os.environ.get("BENCH_VERIFIED_ONLY"):
        results |= await _run_server(sessionmaker, database_url, agents, sizes, verify=False)
    verified = await _run_server(sessionmaker, database_url, agents, sizes, verify=True)
    results |= {f"verified_{key}": value for key, value in verified.items()}
    alone, raw = await _registry_alone(sessionmaker, agents)
    await engine.dispose()
    results["registry_registrations_per_s"] = alone
    results["db_update_rows_per_s"] = raw
    if f"registrations_per_s_{largest}" in results:
        results["ratio"] = results[f"registrations_per_s_{largest}"] / alone
    results["verified_ratio"] = results[f"verified_registrations_per_s_{largest}"] / alone
    return results


async def _run_server(
    sessionmaker: Any,
    database_url: str,
    agents: list[tuple[str, str]],
    sizes: list[int],
    *,
    verify: bool,
) -> dict[str, float]:
    """Run the server side (with the token check ``serve`` uses when ``verify``) and
    the agents' child through every count, then the storm at the largest."""
    largest = max(sizes)
    port = _free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    keys = ApiKeys()
    config = RouterConfig(
        port=port,
        ping_interval=None,
        keys=keys,
        verify_agent=agent_verifier(SECRET, "HS256", sessionmaker) if verify else None,
    )

    def router(system: ActorSystem) -> Supervisor:
        # The session reaches the router in this process, as ``serve`` wires it.
        connector = LocalConnector(
            lambda: system.ref_of("router.hub"),
            keys,
            url=url,
            capacity=config.outbox_capacity,
            backend_capacity=config.backend_outbox_capacity,
        )
        session = SessionConfig(url, keys.master_be, ping_interval=None)
        return Supervisor(
            [*router_children(config), router_session_spec(session, connector=connector)],
            strategy=Strategy.REST_FOR_ONE,
            intensity=RestartIntensity(10, 60.0),
        )

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.agents",
        "--agents",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    child = _Child(process)
    results: dict[str, float] = {}
    try:
        async with open_actor_system(name="bench") as system:
            await system.start(registry_spec(RegistryConfig(SECRET), sessionmaker))
            supervisor = router(system)
            await system.start(ChildSpec("router", lambda: supervisor))
            server = _Server(system, database_url)
            server.db = await asyncpg.connect(_plain(database_url))
            try:
                await child.command(json.dumps({"url": url, "agents": agents}))
                with anyio.fail_after(WAIT):
                    while server.registry.statistics().pending_events:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                # As ``serve`` does once ready: what startup built stays out of full
                # collections, which would otherwise scan it again and again.
                gc.collect()
                gc.freeze()
                for n in sizes:
                    profile = cProfile.Profile() if PROFILE and verify else None
                    results |= await _phase(server, child, n, profile)
                    if profile is not None:
                        profile.dump_stats(f"{PROFILE}.{n}")
                results |= await _storm(server, child, largest)
                stats = server.registry.statistics()
                results["events_dropped"] = stats.events_overflowed + stats.events_failed
                results["rejected"] = stats.rejected
            finally:
                await server.db.close()
                await child.command("quit")
                await process.wait()
    finally:
        gc.unfreeze()
        if process.returncode is None:
            process.kill()
    return results


async def main(sizes: list[int]) -> None:
    async with open_bench_database() as database_url:
        results = await run(database_url, sizes)
    for key, value in results.items():
        print(
            f"{key}={value:.0f}"
            if float(value).is_integer() or value > 100
            else f"{key}={value:.3f}"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--agents"]:
        asyncio.run(_agents())
    else:
        asyncio.run(main([int(a) for a in sys.argv[1:]] or [1000, 5000]))
