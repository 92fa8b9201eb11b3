"""Chat turns through 1, 2 and 3 back-end processes on one database and one router.

Run: ``python -m bench.scale [seconds per phase]``. Prints one ``name=value`` per line.

Each phase starts N ``genai-backend serve`` processes on a throw-away database (see
``bench.logs`` for where PostgreSQL comes from): the first with the embedded router,
the others connected to it (``ROUTER_WS_URL``), as the README's several-process set-up
runs them. An instant master (a WebSocket client connected as ``master_server_ml`` that
answers every invocation at once) and 40 front-end sessions run in this process; session
``i`` talks to process ``i mod N`` (what a round-robin balancer does with their sockets),
each sending its next message as soon as its reply is in, for the phase's seconds.

``scale_turns_per_s_N``, ``scale_p50_ms_N``, ``scale_p99_ms_N``: the chat turns; the
processes' CPU time (user and system, from ``/proc``) over the phase divided by the
turns is ``scale_server_cpu_ms_per_turn_N`` (``_pN`` for each process). The ratios:
``scale_speedup_N`` is turns/s over the one-process phase's, ``scale_cpu_ratio_N`` the
CPU per turn over its. ``scale_db_cpu_ms_per_turn_N`` is the CPU time of every
``postgres`` process of the machine over the phase per turn (the database's share, for
sizing a machine; other databases' work on the same server counts too), and
``scale_load_cpu_ms_per_turn_N`` this load generator's (the master and the 40 UIs). On a
machine of
C cores shared with PostgreSQL and this load generator, the speed-up is bounded by the
cores the servers get, not by the design.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from .chat import INSTANT, _answer
from .logs import _free_port, open_bench_database

SESSIONS = 40
MASTER_AGENT_API_KEY = "bench-master-agent-key"
MASTER_BE_API_KEY = "bench-master-be-key"


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` and its waited-for children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(value) for value in fields[11:15]) / ticks


def _postgres_cpu_seconds() -> float:
    """CPU seconds of every ``postgres`` process this user may read (0 if none)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] == "postgres":
                total += _cpu_seconds(int(stat.parent.name))
    return total


async def _ready(base: str, within: float = 90.0) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/health/ready")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{base} did not get ready")


class Cluster:
    """N serve processes on one database, the first owning the router."""

    def __init__(self, database_url: str, count: int, log: Path) -> None:
        self.database_url = database_url
        self.count = count
        self.log = log
        self.router_port = _free_port()
        self.http_ports = [_free_port() for _ in range(count)]
        self.processes: list[asyncio.subprocess.Process] = []

    @property
    def router_url(self) -> str:
        return f"ws://127.0.0.1:{self.router_port}/ws"

    def base(self, index: int) -> str:
        return f"http://127.0.0.1:{self.http_ports[index]}"

    async def start(self) -> None:
        for index in range(self.count):
            env = {
                **os.environ,
                "DATABASE_URL": self.database_url,
                "HTTP_HOST": "127.0.0.1",
                "HTTP_PORT": str(self.http_ports[index]),
                "ROUTER_HOST": "127.0.0.1",
                "ROUTER_PORT": str(self.router_port),
                "MASTER_AGENT": "external",
                "MASTER_AGENT_API_KEY": MASTER_AGENT_API_KEY,
                "MASTER_BE_API_KEY": MASTER_BE_API_KEY,
                "BCRYPT_ROUNDS": "4",
                "FILES_DIR": tempfile.mkdtemp(),
                "LOG_LEVEL": "WARNING",
                "MAX_SOCKETS_PER_USER": str(SESSIONS),
            }
            if index:
                env["ROUTER_WS_URL"] = self.router_url
            with self.log.open("ab") as out:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-c",
                    "from web.cli import main; main()",
                    "serve",
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            self.processes.append(process)
            await _ready(self.base(index))

    async def stop(self) -> None:
        for process in reversed(self.processes):
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 30)
                except TimeoutError:
                    process.kill()
                    await process.wait()

    def cpu(self) -> list[float]:
        return [_cpu_seconds(process.pid) for process in self.processes]


async def _user(base: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        body = {"username": f"bench{uuid.uuid4().hex[:8]}", "password": "Secret#123"}
        (await http.post("/api/register", json=body)).raise_for_status()
        login = await http.post("/api/login/access-token", data=body)
        token: str = login.raise_for_status().json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        provider = {"name": "openai", "api_key": "sk"}
        (await http.post("/api/llm/model/provider", json=provider, headers=auth)).raise_for_status()
        config = {"name": "gpt", "model": "m", "provider": "openai"}
        (await http.post("/api/llm/model/config", json=config, headers=auth)).raise_for_status()
    return token


async def _sessions(cluster: Cluster, token: str, seconds: float) -> list[float]:
    message = json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"})
    stop_at = time.monotonic() + seconds

    async def one(index: int) -> list[float]:
        host = cluster.base(index % cluster.count).removeprefix("http://")
        url = f"ws://{host}/frontend/ws?token={token}&session_id={uuid.uuid4()}"
        samples = []
        async with connect(url, compression=None) as ws:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                await ws.send(message)
                while True:
                    frame = json.loads(await ws.recv())
                    if frame.get("type") == "agent_response":
                        break
                assert frame["response"]["response"]["is_success"], frame
                samples.append(time.perf_counter() - started)
        return samples

    results = await asyncio.gather(*(one(index) for index in range(SESSIONS)))
    return [sample for result in results for sample in result]


async def _phase(database_url: str, count: int, seconds: float, log: Path) -> dict[str, float]:
    cluster = Cluster(database_url, count, log)
    try:
        await cluster.start()
        token = await _user(cluster.base(0))
        headers = {"API-KEY": MASTER_AGENT_API_KEY}
        async with connect(cluster.router_url, additional_headers=headers) as master:
            answering = asyncio.create_task(_answer(master, INSTANT))
            await asyncio.sleep(0.5)
            await _sessions(cluster, token, min(2.0, seconds))  # warm-up
            before, db_before = cluster.cpu(), _postgres_cpu_seconds()
            load_before = time.process_time()
            started = time.perf_counter()
            samples = await _sessions(cluster, token, seconds)
            elapsed = time.perf_counter() - started
            after, db_after = cluster.cpu(), _postgres_cpu_seconds()
            load_used = time.process_time() - load_before
            answering.cancel()
    finally:
        await cluster.stop()
    quantiles = statistics.quantiles(samples, n=100)
    used = [end - start for start, end in zip(before, after, strict=True)]
    results = {
        f"scale_turns_per_s_{count}": len(samples) / elapsed,
        f"scale_p50_ms_{count}": quantiles[49] * 1000,
        f"scale_p99_ms_{count}": quantiles[98] * 1000,
        f"scale_server_cpu_ms_per_turn_{count}": sum(used) * 1000 / len(samples),
        f"scale_db_cpu_ms_per_turn_{count}": (db_after - db_before) * 1000 / len(samples),
        f"scale_load_cpu_ms_per_turn_{count}": load_used * 1000 / len(samples),
    }
    for index, seconds_used in enumerate(used):
        results[f"scale_server_cpu_ms_per_turn_{count}_p{index + 1}"] = (
            seconds_used * 1000 / len(samples)
        )
    return results


async def run(seconds: float) -> dict[str, float]:
    results: dict[str, float] = {}
    log = Path(tempfile.mkdtemp()) / "serve.log"
    for count in (1, 2, 3):
        async with open_bench_database("genai_scale") as database_url:
            results |= await _phase(database_url, count, seconds, log)
    for count in (2, 3):
        results[f"scale_speedup_{count}"] = (
            results[f"scale_turns_per_s_{count}"] / results["scale_turns_per_s_1"]
        )
        results[f"scale_cpu_ratio_{count}"] = (
            results[f"scale_server_cpu_ms_per_turn_{count}"]
            / results["scale_server_cpu_ms_per_turn_1"]
        )
    return results


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    for name, value in asyncio.run(run(seconds)).items():
        print(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")


if __name__ == "__main__":
    main()
