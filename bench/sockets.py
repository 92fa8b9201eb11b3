"""Server memory per idle front-end socket, next to an idle plain HTTP keep-alive connection.

Run: ``python3 -m uv run python -m bench.sockets``. It creates a database on the local
PostgreSQL (``BENCH_POSTGRES``, or the embedded one), then, for each measurement, starts
the whole server (``open_server``) in a fresh process, registers a user and has a client
process open N connections to it (32 handshakes at a time) and hold them without a word:

- ``ws``: ``/frontend/ws`` sockets, each on a session of its own (what a browser tab
  opens and leaves open);
- ``http``: keep-alive connections that made one ``GET /health/live`` (the floor: what
  hypercorn and the kernel cost per connection before the app keeps anything). The
  keep-alive timeout is raised for the run so that they stay open.

The server's RSS (``/proc/self/status``) is read after a warm-up of a few connections of
each kind and again once the N connections are open and a moment has passed (actors'
first steps done), both after a full collection; the difference over N is the cost of
one. A fresh process per measurement: memory freed by an earlier one would otherwise
be reused and hide the cost. It prints ``ws_kib_per_socket_<N>``,
``http_kib_per_connection_<N>``, and their ratio ``ws_over_http_<N>``, at 1,000 and
10,000 (``python -m bench.sockets 500 2000`` for others). ``BENCH_TRACE=1`` also prints
where the Python heap of the sockets goes (tracemalloc, top lines) for the ``ws`` runs.
Raises RLIMIT_NOFILE to its hard limit in every process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import os
import resource
import sys
import tempfile
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import httpx

import web._server
from web import Settings
from web._server import DatabaseSettings, open_server

from .logs import _free_port, open_bench_database

SIZES = (1000, 10000)
CONCURRENCY = 32
WARM_UP = 64
SETTLE_SECONDS = 3.0
TRACE = os.environ.get("BENCH_TRACE") == "1"
_ROOT = f"{Path(__file__).resolve().parent.parent}/"


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


# -- the client process -------------------------------------------------------------------


async def _open(port: int, kind: str, token: str) -> asyncio.StreamWriter:
    """Open one connection of ``kind`` and return it once the server has answered."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if kind == "ws":
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET /frontend/ws?token={token}&session_id={uuid.uuid4()} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    else:
        request = "GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    writer.write(request.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if kind == "ws":
        assert status == b"101", head
    else:
        assert status == b"200", head
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
    return writer


async def _client(port: int, kind: str, token: str, count: int) -> None:
    """Open ``count`` connections, say so on stdout, hold them until stdin closes."""
    _raise_nofile()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one() -> asyncio.StreamWriter:
        async with gate:
            return await _open(port, kind, token)

    writers = await asyncio.gather(*(one() for _ in range(count)))
    print("open", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for writer in writers:
        writer.close()


# -- the server process -------------------------------------------------------------------


async def _hold(port: int, kind: str, token: str, count: int) -> asyncio.subprocess.Process:
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sockets",
        "--client",
        str(port),
        kind,
        token,
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert client.stdout is not None
    line = await client.stdout.readline()
    assert line == b"open\n", line
    return client


async def _release(client: asyncio.subprocess.Process) -> None:
    assert client.stdin is not None
    client.stdin.close()
    assert await client.wait() == 0


def _keep_alive_config(*args: Any, **kwargs: Any) -> Any:
    # The idle HTTP connections are the baseline: they must outlive the measurement.
    config = _config_of(*args, **kwargs)
    config.keep_alive_timeout = 3600.0
    return config


_config_of = web._server.hypercorn_config


async def _serve(database_url: str, kind: str, count: int) -> dict[str, Any]:
    """Start the server, measure ``count`` idle connections of ``kind``; return figures."""
    _raise_nofile()
    web._server.hypercorn_config = _keep_alive_config  # type: ignore[attr-defined]
    settings = Settings(
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=_free_port(),
        ROUTER_HOST="127.0.0.1",
        ROUTER_PORT=_free_port(),
        FILES_DIR=Path(tempfile.mkdtemp()) / "files",
        BCRYPT_ROUNDS=4,
        SHUTDOWN_GRACE_SECONDS=0.5,
        MAX_SOCKETS_PER_USER=count + WARM_UP,
    )
    async with open_server(settings, DatabaseSettings(DATABASE_URL=database_url)) as server:
        host, port = server.http_addresses[0]
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            body = {"username": f"bench{uuid.uuid4().hex[:8]}", "password": "Secret#123"}
            (await http.post("/api/register", json=body)).raise_for_status()
            login = await http.post("/api/login/access-token", data=body)
            token = login.raise_for_status().json()["access_token"]
        # Warm-up: the first connection of each kind loads and caches what all share.
        for warm in ("http", "ws"):
            await _release(await _hold(port, warm, token, WARM_UP))
        await asyncio.sleep(SETTLE_SECONDS)
        gc.collect()
        before = _rss_kib()
        if TRACE:
            tracemalloc.start(8)
        client = await _hold(port, kind, token, count)
        await asyncio.sleep(SETTLE_SECONDS)
        gc.collect()
        after = _rss_kib()
        top: list[str] = []
        if TRACE:
            snapshot = tracemalloc.take_snapshot()
            tracemalloc.stop()
            stats = snapshot.statistics("lineno")
            total = sum(stat.size for stat in stats)
            top.append(f"traced_bytes_per_connection={total / count:.0f}")
            top.extend(
                f"  {size / count:8.0f} B  {where}" for where, size in _owners(snapshot)[:40]
            )
        await _release(client)
    return {"kib": (after - before) / count, "before_kib": before, "top": top}


def _owners(snapshot: tracemalloc.Snapshot) -> list[tuple[str, int]]:
    """Bytes by the innermost frame of our code or of the web stack that allocated them."""
    owners: dict[str, int] = {}
    for trace in snapshot.traces:
        frames = list(trace.traceback)  # oldest first
        where = f"{frames[-1].filename}:{frames[-1].lineno}"
        for frame in reversed(frames):
            ours = frame.filename.startswith(_ROOT) and "/.venv/" not in frame.filename
            if ours or any(
                name in frame.filename for name in ("hypercorn", "quart", "wsproto", "h11")
            ):
                where = f"{frame.filename.rsplit('/', 2)[-2:]}:{frame.lineno}"
                break
        owners[where] = owners.get(where, 0) + trace.size
    return sorted(owners.items(), key=lambda item: -item[1])


async def _measure(database_url: str, kind: str, count: int) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sockets",
        "--serve",
        database_url,
        kind,
        str(count),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 0, process.returncode
    result: dict[str, Any] = json.loads(out.splitlines()[-1])
    return result


async def main(sizes: tuple[int, ...]) -> None:
    results: dict[str, float] = {}
    async with open_bench_database() as database_url:
        for count in sizes:
            http = await _measure(database_url, "http", count)
            ws = await _measure(database_url, "ws", count)
            for line in ws["top"]:
                print(line, file=sys.stderr)
            results[f"http_kib_per_connection_{count}"] = http["kib"]
            results[f"ws_kib_per_socket_{count}"] = ws["kib"]
            results[f"ws_over_http_{count}"] = ws["kib"] / http["kib"]
            results[f"server_base_rss_mib_{count}"] = ws["before_kib"] / 1024
    for key, value in results.items():
        print(f"{key}={value:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        port, kind, token, count = sys.argv[2:]
        asyncio.run(_client(int(port), kind, token, int(count)))
    elif sys.argv[1:2] == ["--serve"]:
        database_url, kind, count = sys.argv[2:]
        with contextlib.redirect_stdout(sys.stderr):
            figures = asyncio.run(_serve(database_url, kind, int(count)))
        print(json.dumps(figures))
    else:
        asyncio.run(main(tuple(int(arg) for arg in sys.argv[1:]) or SIZES))
