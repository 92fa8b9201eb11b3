"""Three `serve` processes on one PostgreSQL and one router (embedded in the first),
behind a round-robin balancer, driven as users would: every HTTP request lands on the
next process; sockets land where the balancer puts them; one process is killed with
SIGKILL in the middle of a turn."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import connect

from actors.chat import INTERRUPTED

from ..actors.agents import free_port, invoke_echo, start_agent, stop_processes
from ..faults.conftest import open_master
from .balancer import open_balancer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.abc import Process

    from .balancer import Balancer

MASTER_KEY = "cluster-master-agent-key"
PASSWORD = "Secret#123"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Cluster:
    def __init__(self, database_url: str, tmp: Path) -> None:
        self.database_url = database_url
        self.tmp = tmp
        self.router_port = free_port()
        self.http_ports = [free_port() for _ in range(3)]
        self.processes: list[Process] = []

    @property
    def router_url(self) -> str:
        return f"ws://127.0.0.1:{self.router_port}/ws"

    def env(self, index: int) -> dict[str, str]:
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.http_ports[index]),
            "ROUTER_HOST": "127.0.0.1",
            "ROUTER_PORT": str(self.router_port),
            "MASTER_AGENT": "external",
            "MASTER_AGENT_API_KEY": MASTER_KEY,
            "BCRYPT_ROUNDS": "4",
            "FILES_DIR": str(self.tmp / f"files{index}"),
            "HEARTBEAT_SECONDS": "0.5",
            "PEER_TIMEOUT_SECONDS": "2",
            "SHUTDOWN_GRACE_SECONDS": "1",
        }
        if index:
            env["ROUTER_WS_URL"] = self.router_url
        return env

    async def start(self) -> None:
        for index in range(3):
            with (self.tmp / f"serve{index}.log").open("ab") as out:
                process = await anyio.open_process(
                    [
                        sys.executable,
                        "-c",
                        "from web.cli import main; main()",
                        "serve",
                        "--migrate",
                    ],
                    env=self.env(index),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            self.processes.append(process)
            await wait_ready(f"http://127.0.0.1:{self.http_ports[index]}")

    def log(self, index: int) -> str:
        return (self.tmp / f"serve{index}.log").read_text(errors="replace")


async def wait_ready(base: str, within: float = 60.0) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        with anyio.fail_after(within):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health/ready")).status_code == 200:
                        return
                await anyio.sleep(0.1)


@pytest.fixture(name="cluster")
async def _cluster(database_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster = Cluster(database_url, tmp_path)
    try:
        await cluster.start()
        yield cluster
    finally:
        for process in cluster.processes:
            if process.returncode is None:
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            await process.aclose()


def fresh_connections(base: str) -> httpx.AsyncClient:
    """A client that opens a connection per request, so that each lands on the next
    process behind the balancer."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=base, limits=limits, timeout=20)


FINALS = {"answered", "failed", "cancelled", "interrupted"}


async def frames_for(ws: Any, seconds: float) -> list[str]:
    """Every frame that arrives within ``seconds``."""
    frames: list[str] = []
    with anyio.move_on_after(seconds):
        while True:
            frames.append(await ws.recv())
    return frames


async def frames_until_response(ws: Any, within: float = 15.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame.get("type") == "agent_response":
                return frame


async def test_three_processes_serve_one_service(cluster: Cluster, tmp_path: Path) -> None:
    targets = [("127.0.0.1", port) for port in cluster.http_ports]
    agents: list[Process] = []
    async with (
        open_balancer(targets) as balancer,
        open_master(cluster.router_url, MASTER_KEY) as master,
        fresh_connections(balancer.url) as http,
    ):
        try:
            await _scenario(cluster, balancer, master, http, agents)
        finally:
            await stop_processes(agents)


async def _scenario(
    cluster: Cluster, balancer: Balancer, master: Any, http: httpx.AsyncClient, agents: list[Any]
) -> None:
    # A user signs up, signs in and sets up a model and an agent: each request on the
    # next process.
    name = f"user_{uuid.uuid4().hex[:8]}"
    assert (
        await http.post("/api/register", json={"username": name, "password": PASSWORD})
    ).status_code == 200
    login = await http.post(
        "/api/login/access-token", data={"username": name, "password": PASSWORD}
    )
    token = login.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    provider = {"name": "openai", "api_key": "sk-test"}
    assert (
        await http.post("/api/llm/model/provider", json=provider, headers=auth)
    ).status_code == 200
    config = {"name": "gpt", "model": "m", "provider": "openai"}
    assert (await http.post("/api/llm/model/config", json=config, headers=auth)).status_code == 200
    agent = (
        await http.post(
            "/api/agents/register",
            json={"name": "echo", "description": "echoes", "input_parameters": {}},
            headers=auth,
        )
    ).json()
    await start_agent(sys.executable, "echo", cluster.router_url, agent["jwt"], agents)
    # The agent is active whichever process answers (the list caches follow the
    # catalogue's notifications on every process).
    with anyio.fail_after(20):
        while True:
            seen = []
            for _ in range(3):
                listed = await http.get(
                    "/api/agents/active", params={"agent_type": "all"}, headers=auth
                )
                seen.append(
                    any(a["id"] == agent["id"] for a in listed.json()["active_connections"])
                )
            if all(seen):
                break
            await anyio.sleep(0.2)
    assert min(balancer.sent) >= 3, balancer.sent

    # Every process sees the two others, and its metrics say which process it is.
    for port in cluster.http_ports:
        async with httpx.AsyncClient() as direct:
            health = (await direct.get(f"http://127.0.0.1:{port}/health")).json()
            metrics = (await direct.get(f"http://127.0.0.1:{port}/metrics")).text
        assert len(health["peers"]) == 2, health["peers"]
        assert f'process_id="{health["process"]["id"]}"' in metrics
        assert 'genai_cluster{stat="peers"} 2.0' in metrics

    # Three conversations, one socket each, land on the three processes; all answered.
    ws_base = balancer.url.replace("http://", "ws://")
    message = json.dumps({"message": "hello", "llm_name": "gpt", "provider": "openai"})
    master.release("*")
    sessions = [uuid.uuid4() for _ in range(3)]
    for session_id in sessions:
        async with connect(f"{ws_base}/frontend/ws?token={token}&session_id={session_id}") as ws:
            await ws.send(message)
            frame = await frames_until_response(ws)
            assert frame["response"]["response"]["response"] == f"answer for {session_id}"
    master.released.clear()

    # The agent logs under a conversation whose socket is on a process that does not
    # hold the router: the owner's socket there gets the log, once.
    logged = uuid.uuid4()
    if balancer._next % 3 == 0:  # not the router's process: the one that stores the logs
        balancer._next += 1
    async with connect(f"{ws_base}/frontend/ws?token={token}&session_id={logged}") as ui:
        request_id = await invoke_echo(
            cluster.router_url, MASTER_KEY, agent["id"], "across", str(logged)
        )
        logs: list[dict[str, Any]] = []
        with anyio.fail_after(15):
            while "echo across" not in [log["message"] for log in logs]:
                frame = json.loads(await ui.recv())
                if frame.get("type") == "agent_log" and frame["log"]["request_id"] == request_id:
                    logs.append(frame["log"])
        with anyio.move_on_after(0.5):
            while True:
                frame = json.loads(await ui.recv())
                if frame.get("type") == "agent_log":
                    logs.append(frame["log"])
        pushed = [(log["created_at"], log["message"]) for log in logs]
        assert len(pushed) == len(set(pushed)), pushed  # each log once

    # Two sockets of one conversation on two processes, a message on each at once:
    # one turn runs at a time (the master is asked once until it answers), and both
    # sockets get both replies.
    shared = uuid.uuid4()
    shared_url = f"{ws_base}/frontend/ws?token={token}&session_id={shared}"
    async with connect(shared_url) as one, connect(shared_url) as two:
        await one.send(message)
        await two.send(message)
        await master.wait_seen(shared)
        with anyio.move_on_after(1.5):
            await master.wait_seen(shared, 2)
        assert master.seen[str(shared)] == 1
        master.release(shared)
        await master.wait_seen(shared, 2)
        for ws in (one, two):
            answers = [await frames_until_response(ws) for _ in range(2)]
            assert len({answer["response"]["request_id"] for answer in answers}) == 2
            assert all(a["response"]["response"]["is_success"] for a in answers)

    # A turn held by the master on the process the balancer gives next; that process
    # is killed. Its socket closes; once a peer has found it gone, the turn is
    # interrupted and the conversation's next socket (on a live process) is told.
    held = uuid.uuid4()
    victim = balancer._next % 3
    if victim == 0:  # keep the router's process: agents and the master live on it
        balancer._next += 1
        victim = 1
    held_url = f"{ws_base}/frontend/ws?token={token}&session_id={held}"
    async with connect(f"{held_url}&events=1") as ws:
        await ws.send(message)
        with anyio.fail_after(10):
            while True:
                event = json.loads(await ws.recv())
                if event.get("kind") == "master_invoked":
                    request_id = event["request_id"]
                    break
        await master.wait_seen(held)
        # A second tab of the conversation, on a live process, sends a message: it
        # waits behind the held turn.
        async with connect(held_url) as waiting:
            await waiting.send(message)
            with anyio.move_on_after(1.0):
                await master.wait_seen(held, 2)
            assert master.seen[str(held)] == 1
            os.killpg(cluster.processes[victim].pid, signal.SIGKILL)
            await cluster.processes[victim].wait()
            with anyio.fail_after(10), contextlib.suppress(Exception):
                await ws.recv()  # the socket is gone with its process
            # A peer finds the process gone and interrupts its turn: the waiting tab is
            # told, then its own turn runs.
            frame = await frames_until_response(waiting, within=30)
            assert frame["response"]["request_id"] == request_id
            assert frame["response"]["response"]["response"] == INTERRUPTED
            await master.wait_seen(held, 2)
            master.release("*")
            frame = await frames_until_response(waiting)
            assert frame["response"]["response"]["is_success"] is True
    turn = await http.get(f"/api/chat/turns/{request_id}", headers=auth)
    assert turn.json()["status"] == "interrupted"
    # A tab that reconnects resumes from the turn events: both turns, once each.
    async with connect(f"{held_url}&after_seq=0") as again:
        replayed = [json.loads(frame) for frame in await frames_for(again, 1.0)]
    finals = [(f["kind"], f["request_id"]) for f in replayed if f.get("kind") in FINALS]
    assert finals[0] == ("interrupted", request_id)
    assert [kind for kind, _ in finals] == ["interrupted", "answered"]
    # The logs that reached a live process are stored, each once, whichever answers.
    stored = (
        await http.get("/api/logs/list", params={"session_id": str(logged)}, headers=auth)
    ).json()
    messages = [log["message"] for log in stored]
    assert "echo across" in messages
    assert len(stored) == len({(log["created_at"], log["message"]) for log in stored})
    # The service goes on with two processes.
    async with connect(f"{ws_base}/frontend/ws?token={token}&session_id={uuid.uuid4()}") as ws:
        await ws.send(message)
        frame = await frames_until_response(ws)
    assert frame["response"]["response"]["is_success"] is True
