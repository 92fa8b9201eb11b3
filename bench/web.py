"""Requests/s and latency of the list routes next to a trivial JSON route of the same app.

Run: ``python3 -m uv run python -m bench.web``. It creates a database on the local
PostgreSQL (127.0.0.1:5432), seeds 100 agents and 20 flows for one user, serves the app
with hypercorn in this process and loads each route from a separate client process (so
the client never competes for the server's event loop): a warm-up, then interleaved
rounds. It prints ``name=value`` lines: medians of the rounds, and the ratio of each
list's rate to the trivial route's. Twice: as the server runs (catalogue changes heard,
so a list is answered from the cache until something of its user changes), then with
changes not heard (``*_uncached``: every request reads the listed rows' versions and
reuses only the rows it rendered before).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from typing import Any

import asyncpg
import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Blueprint
from sqlalchemy import update

import persistence
from web import Settings, create_app
from web.common import json_response
from web.services import AppServices

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PORT = 18765
CONCURRENCY = 16
WARM_UP = 1.0
DURATION = 6.0
ROUNDS = 3

ping = Blueprint("bench_ping", __name__)


@ping.get("/bench/ping")
async def ping_route() -> Any:
    return json_response({"ok": True})


async def _load(port: int, path: str, headers: dict[str, str], duration: float) -> dict[str, Any]:
    """Keep CONCURRENCY keep-alive connections busy on ``path`` for ``duration`` seconds.

    A bare HTTP/1.1 client: it costs far less per request than the server it measures.
    """
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode()
    latencies: list[float] = []
    deadline = time.perf_counter() + duration

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                writer.write(request)
                status, *lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
                assert status.split()[1] == b"200", status
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in lines
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def _run_client(port: int, path: str, headers: dict[str, str], duration: float) -> Any:
    """Load ``path`` from a separate process (its own event loop and CPU).

    Also returns ``cpu_ms``: this (the server's) process CPU time per request meanwhile,
    which a busy machine disturbs far less than the request rate.
    """
    args = ["client", str(port), path, json.dumps(headers), str(duration)]
    cpu = time.process_time()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.web", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, process.returncode
    result = json.loads(out)
    result["cpu_ms"] = (time.process_time() - cpu) * 1000 / result["requests"]
    return result


async def _measure(port: int, routes: dict[str, tuple[str, dict[str, str]]]) -> dict[str, Any]:
    """Warm every route up, then load them in turn for ROUNDS rounds; keep the medians.

    Interleaving the routes spreads any slow spell of the machine over all of them.
    """
    for path, headers in routes.values():
        await _run_client(port, path, headers, WARM_UP)
    runs: dict[str, list[dict[str, float]]] = {key: [] for key in routes}
    for _ in range(ROUNDS):
        for key, (path, headers) in routes.items():
            runs[key].append(await _run_client(port, path, headers, DURATION / ROUNDS))
    return {
        key: {
            metric: statistics.median(run[metric] for run in results)
            for metric in ("rps", "p50_ms", "p99_ms", "cpu_ms")
        }
        for key, results in runs.items()
    }


async def main() -> None:
    name = f"genai_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(SERVER)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = persistence.to_async_url(SERVER.rsplit("/", 1)[0] + f"/{name}")
    engine = persistence.create_engine(url, pool_size=20, max_overflow=0)
    stack = contextlib.AsyncExitStack()
    try:
        await persistence.upgrade_to_head(url)
        settings, sessionmaker = Settings(BCRYPT_ROUNDS=4), persistence.create_sessionmaker(engine)
        # As the server runs it: the lists are cached while catalogue changes are heard.
        versions = persistence.CatalogueVersions()
        await stack.enter_async_context(persistence.listen_for_catalogue_changes(url, versions))
        services = AppServices(settings, sessionmaker, catalogue=versions)
        app = create_app(settings, sessionmaker, services=services)
        app.register_blueprint(ping)
        config = Config()
        config.bind = [f"127.0.0.1:{PORT}"]
        config.accesslog = None
        stop = asyncio.Event()
        server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORT}", timeout=30) as client:
            await client.post("/api/register", json={"username": "bench", "password": "Bench#123"})
            token = (
                await client.post(
                    "/api/login/access-token", data={"username": "bench", "password": "Bench#123"}
                )
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            ids = []
            for i in range(100):
                body = {
                    "name": f"agent {i}",
                    "description": "benchmark agent",
                    "input_parameters": {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "description": "d",
                            "parameters": {
                                "type": "object",
                                "properties": {"q": {"type": "string"}},
                            },
                        },
                    },
                }
                ids.append(
                    (await client.post("/api/agents/register", json=body, headers=headers)).json()[
                        "id"
                    ]
                )
            async with persistence.create_sessionmaker(engine).begin() as session:
                await session.execute(update(persistence.Agent).values(is_active=True))
            for i in range(20):
                flow = [{"id": ids[i], "type": "genai"}, {"id": ids[i + 1], "type": "genai"}]
                body = {"name": f"flow {i}", "description": "benchmark flow", "flow": flow}
                response = await client.post("/api/agentflows/register", json=body, headers=headers)
                assert response.status_code == 200, response.text
            for path, expected in (("/api/agents/", 100), ("/api/agentflows/", 20)):
                listed = (await client.get(path, headers=headers)).json()
                assert len(listed) == expected, (path, len(listed))
            routes = {
                "trivial": ("/bench/ping", {}),
                "agents_list_100": ("/api/agents/", headers),
                "agentflows_list_20": ("/api/agentflows/", headers),
            }
            cached = await _measure(PORT, routes)
            # Then as while the database cannot tell us what changes: every list request
            # reads the rows' versions (and renders only rows it has not rendered yet).
            versions.deaf()
            uncached = await _measure(PORT, routes)
        stop.set()
        await server
    finally:
        await stack.aclose()
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    for suffix, results in (("", cached), ("_uncached", uncached)):
        base = results["trivial"]["rps"]
        for key, values in results.items():
            for metric, value in values.items():
                print(f"{key}{suffix}_{metric}={value:.{2 if metric == 'cpu_ms' else 1}f}")
            if key != "trivial":
                print(f"{key}{suffix}_ratio={values['rps'] / base:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        port, path, headers, duration = sys.argv[2:]
        print(json.dumps(asyncio.run(_load(int(port), path, json.loads(headers), float(duration)))))
    else:
        asyncio.run(main())
