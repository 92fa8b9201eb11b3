"""Requests/s and latency of the list routes next to a trivial JSON route of the same app.

Run: ``python3 -m uv run python -m bench.web``. It creates a database on the local
PostgreSQL (127.0.0.1:5432), seeds 100 agents and 20 flows for one user, serves the app
with hypercorn and prints ``name=value`` lines.
"""

from __future__ import annotations

import asyncio
import statistics
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

SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PORT = 18765
CONCURRENCY = 16
DURATION = 4.0

ping = Blueprint("bench_ping", __name__)


@ping.get("/bench/ping")
async def ping_route() -> Any:
    return json_response({"ok": True})


async def _measure(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + DURATION

    async def worker() -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


async def main() -> None:
    name = f"genai_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(SERVER)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = persistence.to_async_url(SERVER.rsplit("/", 1)[0] + f"/{name}")
    engine = persistence.create_engine(url, pool_size=20, max_overflow=0)
    try:
        await persistence.upgrade_to_head(url)
        app = create_app(Settings(BCRYPT_ROUNDS=4), persistence.create_sessionmaker(engine))
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
            await _measure(client, "/bench/ping", {})  # warm-up
            results = {
                "trivial": await _measure(client, "/bench/ping", {}),
                "agents_list_100": await _measure(client, "/api/agents/", headers),
                "agentflows_list_20": await _measure(client, "/api/agentflows/", headers),
            }
        stop.set()
        await server
    finally:
        await engine.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    base = results["trivial"]["rps"]
    for key, values in results.items():
        for metric, value in values.items():
            print(f"{key}_{metric}={value:.1f}")
        if key != "trivial":
            print(f"{key}_ratio={values['rps'] / base:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
