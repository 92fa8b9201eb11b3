"""Lifecycle timings: a warm start to ready, and router recovery to a working chat turn.

``warm_start_to_ready_seconds``: ``genai-backend serve`` with the embedded database on
an existing data directory, from process start to ``/health/ready`` 200 (the median of
three), and its breakdown: ``warm_start_python_seconds`` (the interpreter alone),
``warm_start_imports_seconds`` (importing the server's modules, bytecode cached),
``warm_start_postgres_seconds`` (starting the embedded PostgreSQL on its data); the rest
is the supervision tree, the schema check and the listening sockets.
``cold_start_to_ready_seconds``: the same on a new data directory (initdb, migrations).
``router_recovery_to_chat_seconds``: an external router stopped and started again on
its port; from its restart to the first chat turn answered over the front-end socket.

Run: ``python3 run.py python -m bench.lifecycle``; prints ``name=value`` lines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
from websockets.asyncio.client import connect

from actors.router import ApiKeys, open_router
from persistence import (
    ConfigRepository,
    DatabaseSettings,
    EmbeddedPostgres,
    ProviderRepository,
    create_engine,
    create_sessionmaker,
)
from web import Settings
from web._server import open_server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_until_ready(data_dir: Path, work: Path) -> float:
    env = {
        **os.environ,
        "PGDATA_DIR": str(data_dir),
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(_free_port()),
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(_free_port()),
    }
    for name in ("DATABASE_URL", "SQLALCHEMY_ASYNC_DATABASE_URI", "POSTGRES_HOST"):
        env.pop(name, None)
    url = f"http://127.0.0.1:{env['HTTP_PORT']}/health/ready"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "serve"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.perf_counter() - started > 120:
                raise RuntimeError("the server did not become ready")
            time.sleep(0.02)
        return time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def _median_subprocess_seconds(code: str) -> float:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[1]


def _postgres_start_seconds(data_dir: Path) -> float:
    times = []
    for _ in range(3):
        server = EmbeddedPostgres(data_dir)
        started = time.perf_counter()
        server.start()
        times.append(time.perf_counter() - started)
        server.stop()
    return sorted(times)[1]


def warm_start(work: Path) -> dict[str, float]:
    data_dir = work / "pgdata"
    cold = _serve_until_ready(data_dir, work)
    warm = sorted(_serve_until_ready(data_dir, work) for _ in range(3))
    python = _median_subprocess_seconds("pass")
    imports = _median_subprocess_seconds("import web._server") - python
    return {
        "cold_start_to_ready_seconds": cold,
        "warm_start_to_ready_seconds": warm[1],
        "warm_start_python_seconds": python,
        "warm_start_imports_seconds": imports,
        "warm_start_postgres_seconds": _postgres_start_seconds(data_dir),
    }


async def _master(url: str, key: str) -> None:
    """Answer every master invocation at once."""
    async with connect(url, additional_headers={"API-KEY": key}) as ws:
        async for raw in ws:
            frame = json.loads(raw)
            if "invoked_by" in frame:
                answer = {"agents_trace": [], "response": "ok", "is_success": True}
                await ws.send(
                    json.dumps(
                        {
                            "response": answer,
                            "message_type": "agent_response",
                            "execution_time": 0.0,
                            "invoked_by": frame["invoked_by"],
                        }
                    )
                )


async def _run_router(port: int, keys: ApiKeys, stop: anyio.Event, *, task_status: Any) -> None:
    async with open_router("127.0.0.1", port, keys=keys) as router, anyio.create_task_group() as tg:
        tg.start_soon(_master, router.url, keys.master_agent)
        task_status.started()
        await stop.wait()
        tg.cancel_scope.cancel()


async def _chat_turn(ws_url: str) -> bool:
    message = json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"})
    async with connect(ws_url) as ws:
        await ws.send(message)
        with anyio.fail_after(5):
            frame = json.loads(await ws.recv())
    return bool(frame["response"]["response"]["is_success"])


async def router_recovery(work: Path) -> dict[str, float]:
    router_port = _free_port()
    settings = Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=_free_port(),
        ROUTER_WS_URL=f"ws://127.0.0.1:{router_port}/ws",
        FILES_DIR=work / "files",
        BCRYPT_ROUNDS=4,
    )
    keys = ApiKeys(master_be=settings.MASTER_BE_API_KEY, master_agent=settings.MASTER_AGENT_API_KEY)
    db = DatabaseSettings(PGDATA_DIR=str(work / "pgdata"))
    async with anyio.create_task_group() as tg:
        stop = anyio.Event()
        await tg.start(_run_router, router_port, keys, stop)
        async with open_server(settings, db) as server:
            base = f"http://127.0.0.1:{settings.HTTP_PORT}"
            token, user_id = await _user(base)
            engine = create_engine(server.database.url)
            async with create_sessionmaker(engine).begin() as session:
                provider = await ProviderRepository(session).add(
                    creator_id=user_id,
                    name="openai",
                    api_key=settings.api_key_cipher().encrypt("sk"),
                    provider_metadata={},
                )
                await ConfigRepository(session).add(
                    creator_id=user_id,
                    provider_id=provider.id,
                    name="gpt",
                    model="m",
                    system_prompt="s",
                )
            await engine.dispose()
            ws_url = f"ws://127.0.0.1:{settings.HTTP_PORT}/frontend/ws?token={token}"
            assert await _chat_turn(ws_url)
            stop.set()
            await anyio.sleep(1.0)  # the session notices and starts backing off
            stop = anyio.Event()
            restarted = time.perf_counter()
            await tg.start(_run_router, router_port, keys, stop)
            while not await _chat_turn(ws_url):  # noqa: ASYNC110 - polls over the socket
                await anyio.sleep(0.01)
            recovered = time.perf_counter() - restarted
            stop.set()
    return {"router_recovery_to_chat_seconds": recovered}


async def _user(base: str) -> tuple[str, uuid.UUID]:
    name = f"bench_{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base) as http:
        user = (
            await http.post("/api/register", json={"username": name, "password": "Secret#123"})
        ).json()
        login = await http.post(
            "/api/login/access-token", data={"username": name, "password": "Secret#123"}
        )
    return login.json()["access_token"], uuid.UUID(user["id"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            results = warm_start(work)
            results |= anyio.run(router_recovery, work)
        finally:
            # Run as root, the data went to a directory the server's user can reach.
            if (work / "pgdata").is_symlink():
                shutil.rmtree((work / "pgdata").resolve(), ignore_errors=True)
    for name, value in results.items():
        print(f"{name}={value:.3f}")


if __name__ == "__main__":
    main()
