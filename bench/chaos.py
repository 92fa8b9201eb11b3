"""Random faults under a steady load: every fault heals itself, and nothing accepted is lost.

Run: ``python -m bench.chaos [seconds] [seed]`` (default 180 s, a random seed). Prints one
``name=value`` per line, the seed first: the same seed draws the same faults.

The server is the real one from ``open_server`` (embedded router, router session,
registry, chat actors, fan-out, HTTP face) in this process, on a throw-away database
(see ``bench.logs`` for where PostgreSQL comes from) that it reaches through a TCP
proxy, so that the database can be cut and restored while both keep running.

The load, steady for the whole run:

- ``CHAT_SESSIONS`` front-end sockets, each sending a message, waiting for its
  ``agent_response`` and pausing a little (exponential, mean ``THINK``); the master
  agent is an instant one on the router (in this process, reconnecting if dropped);
- ``AGENTS`` agents in child processes (``python -m bench.chaos --agent``), each a
  WebSocket client with its own agent JWT that registers, then sends bursts of
  ``agent_log`` frames with valid ids. A burst counts as sent once a ping sent after it
  has its pong (the router has read every frame of it); the agent then reports the
  count and waits for the word to go on, so that a kill never lands in the middle of a
  burst: ``logs_sent`` is exact.

The faults, one every few seconds at random: the database cut for 2-6 s, the router
session crashed by an injected error, a chat actor crashed by an injected error, an
agent killed (SIGKILL) and started again, the log fan-out crashed (at most one crash of
a root child per ``ROOT_CRASH_GAP`` seconds: the root's restart intensity is for bugs,
three in five seconds, and the fan-out's crashes are the only bugs here). After each
fault ends the run measures how long ``/health/ready`` takes to answer 200 again.

At the end the faults stop, the load drains and the agents leave; then:
``turns_sent``, ``turns_answered`` (sessions whose every message got exactly one
``agent_response``, counted in messages), ``turns_duplicated``, ``turns_hung`` (no
answer within ``HUNG_AFTER`` seconds), ``turns_failed`` (answered with
``is_success: false``: the error replies of turns that met a fault), ``logs_sent``,
``logs_stored``, ``logs_duplicated``, ``failed_actors`` (nodes of the tree in state ``failed``),
``agents_connected_but_inactive`` and ``agents_gone_but_active`` (registrations and
unregistrations not applied once the faults stop),
``ready_after_s`` (the worst time from a fault's end to ready) and a count per fault.
The targets: every turn answered once, none hung, ``logs_stored == logs_sent``, no
failed actor, ready within 10 s of each fault's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import jwt
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import persistence
from actors import RouterSession
from actors.chat import ChatActor
from actors.fanout import LogFanout
from persistence import AgentRepository, ConfigRepository, DatabaseSettings, ProviderRepository
from runtime import ActorDeadError, ActorState, ActorSystem, MailboxFullError, SupervisorInfo
from tests.faults.proxy import TcpProxy, open_proxy
from web import Settings
from web._server import open_server

from .logs import _free_port, _plain, open_bench_database

CHAT_SESSIONS = 8
AGENTS = 4
BURST = 25
"""Logs per burst of one agent."""
AGENT_RATE = 80.0
"""Logs per second of one agent: a steady load, well under what the path carries and
under the router's per-agent log budget (ROUTER_LOG_RATE, 100/s)."""
THINK = 0.1
"""Mean pause (seconds) of a chat session between a reply and its next message."""
HUNG_AFTER = 30.0
"""Seconds after which an unanswered message counts as hung (the master deadline is 10)."""
ROOT_CRASH_GAP = 8.0
PASSWORD = "Secret#123"
SECRET = "chaos-secret-of-at-least-32-bytes-long!"


# -- injected errors --------------------------------------------------------------------


@dataclass(frozen=True)
class Bug:
    """A message that makes the actor it is told to crash, as a bug would."""


def _inject() -> None:
    """Make the router session, the chat actors and the fan-out crash on a `Bug`."""
    for cls in (RouterSession, ChatActor, LogFanout):
        handle = cls.handle

        async def crashing(self: Any, message: Any, _handle: Any = handle) -> Any:
            if isinstance(message, Bug):
                raise RuntimeError("injected by bench.chaos")
            return await _handle(self, message)

        cls.handle = crashing  # type: ignore[method-assign]


def _crash(system: ActorSystem, path: str) -> bool:
    try:
        system.ref_of(path).tell_nowait(Bug())
    except (ActorDeadError, MailboxFullError, KeyError):
        return False
    return True


def _crash_a_chat(system: ActorSystem) -> bool:
    chats = system.supervisor("chats")
    keys = chats.keys()  # type: ignore[union-attr]
    random.shuffle(keys)
    for key in keys:
        ref = chats.get(key)  # type: ignore[union-attr]
        if ref is None:
            continue
        with contextlib.suppress(ActorDeadError, MailboxFullError):
            ref.tell_nowait(Bug())
            return True
    return False


def _failed_nodes(info: Any) -> list[str]:
    found = [info.path] if info.state is ActorState.FAILED else []
    if isinstance(info, SupervisorInfo):
        for child in info.children:
            found += _failed_nodes(child)
    return found


# -- the agents (child processes) -------------------------------------------------------


async def _agent(url: str, token: str, agent_id: str) -> None:
    """Register, then send bursts of logs; report each burst once the router has read it.

    After each report, wait for a line on stdin: ``go`` sends the next burst, ``stop``
    leaves (closing the socket). A kill therefore never interrupts a burst.
    """
    loop = asyncio.get_running_loop()
    sent = 0
    headers = {"X-Custom-Authorization": token}
    async with connect(url, additional_headers=headers, ping_interval=None) as ws:
        register = {
            "agent_name": f"chaos_{agent_id[:8]}",
            "agent_description": "sends logs under faults",
            "agent_input_schema": {"type": "function", "function": {"name": "chaos"}},
        }
        await ws.send(json.dumps({"message_type": "agent_register", "request_payload": register}))
        reader = asyncio.create_task(_discard(ws))
        while True:
            session_id, request_id = str(uuid.uuid4()), str(uuid.uuid4())
            for n in range(BURST):
                frame = {
                    "message_type": "agent_log",
                    "log_message": f"chaos log {sent + n}",
                    "log_level": "info",
                    "agent_uuid": agent_id,
                    "request_id": request_id,
                    "session_id": session_id,
                }
                await ws.send(json.dumps(frame))
            pong = await ws.ping()
            await pong
            sent += BURST
            print(f"sent {sent}", flush=True)
            order = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if order != "go":
                break
            await asyncio.sleep(BURST / AGENT_RATE)
        reader.cancel()


async def _discard(ws: ClientConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


@dataclass
class AgentProcess:
    """One agent id, run by one child process at a time."""

    agent_id: str
    token: str
    url: str
    confirmed_before: int = 0
    """Logs confirmed by the earlier processes of this agent."""
    confirmed: int = 0
    """Logs confirmed by the current process."""
    process: asyncio.subprocess.Process | None = None
    kill_next: bool = False
    stopping: bool = False
    restarts: int = 0
    done: anyio.Event = field(default_factory=anyio.Event)

    @property
    def sent(self) -> int:
        return self.confirmed_before + self.confirmed

    async def run(self) -> None:
        while not self.stopping:
            await self._one_process()
        self.done.set()

    async def _one_process(self) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.chaos",
            "--agent",
            self.url,
            self.token,
            self.agent_id,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        try:
            while True:
                line = await process.stdout.readline()
                if not line:
                    break  # it left (its socket closed): start another
                self.confirmed = int(line.split()[1])
                if self.kill_next:
                    self.kill_next = False
                    process.send_signal(signal.SIGKILL)
                    self.restarts += 1
                    break
                order = b"stop\n" if self.stopping else b"go\n"
                process.stdin.write(order)
                await process.stdin.drain()
                if self.stopping:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            await process.wait()
            self.confirmed_before += self.confirmed
            self.confirmed = 0


# -- the load ---------------------------------------------------------------------------


@dataclass
class ChatStats:
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    hung: int = 0
    sockets_closed: int = 0


async def _chat_session(base: str, token: str, stats: ChatStats, stop: anyio.Event) -> None:
    session_id = str(uuid.uuid4())
    url = f"ws://{base.removeprefix('http://')}/frontend/ws?token={token}&session_id={session_id}"
    message = json.dumps({"message": "hi", "llm_name": "gpt", "provider": "openai"})
    while not stop.is_set():
        try:
            async with connect(url) as ws:
                while not stop.is_set():
                    await ws.send(message)
                    stats.sent += 1
                    stats.messages[session_id] += 1
                    with anyio.move_on_after(HUNG_AFTER) as waited:
                        while True:
                            frame = json.loads(await ws.recv())
                            if frame.get("type") == "agent_response":
                                break
                    if waited.cancelled_caught:
                        stats.hung += 1
                        continue
                    stats.answers[session_id] += 1
                    if not frame["response"]["response"].get("is_success"):
                        stats.failed += 1
                    await anyio.sleep(random.expovariate(1 / THINK))
        except (ConnectionClosed, OSError):
            stats.sockets_closed += 1
            await anyio.sleep(0.5)


async def _master(router_url: str, api_key: str, stop: anyio.Event) -> None:
    """An instant master agent that reconnects whenever the router drops it."""
    reply = {"response": "ok", "agents_trace": [], "is_success": True}
    while not stop.is_set():
        try:
            async with connect(router_url, additional_headers={"API-KEY": api_key}) as ws:
                async for data in ws:
                    frame = json.loads(data)
                    if "invoked_by" in frame:
                        answer = {
                            "response": reply,
                            "message_type": "agent_response",
                            "execution_time": 0.0,
                            "invoked_by": frame["invoked_by"],
                        }
                        await ws.send(json.dumps(answer))
        except (ConnectionClosed, OSError):
            await anyio.sleep(0.2)


async def _settled(
    read: Callable[[], Awaitable[int]], done: Callable[[int], bool], within: float = 60.0
) -> int:
    """Read until ``done`` holds or ``within`` seconds pass; return the last value read."""
    value = await read()
    with anyio.move_on_after(within):
        # The database is what is measured; it has no change notification to wait on.
        while not done(value):
            await anyio.sleep(0.2)
            value = await read()
    return value


async def _ready_after(http: httpx.AsyncClient, ended: float, limit: float = 60.0) -> float:
    with anyio.move_on_after(limit):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/health/ready")).status_code == 200:
                    return time.monotonic() - ended
            await anyio.sleep(0.05)
    return float("inf")


# -- the run ----------------------------------------------------------------------------


@dataclass
class Faults:
    system: ActorSystem
    proxy: TcpProxy
    agents: list[AgentProcess]
    http: httpx.AsyncClient
    counts: Counter[str] = field(default_factory=Counter)
    ready_after: dict[str, float] = field(default_factory=dict)
    last_root_crash: float = 0.0

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            await anyio.sleep(random.uniform(2.0, 5.0))
            kinds = ["database", "session", "chat", "agent"]
            if time.monotonic() - self.last_root_crash > ROOT_CRASH_GAP:
                kinds.append("fanout")
            kind = random.choice(kinds)
            if await self._one(kind):
                self.counts[kind] += 1
                ready = await _ready_after(self.http, time.monotonic())
                self.ready_after[kind] = max(ready, self.ready_after.get(kind, 0.0))

    async def _one(self, kind: str) -> bool:
        if kind == "database":
            self.proxy.cut()
            await anyio.sleep(random.uniform(2.0, 6.0))
            self.proxy.restore()
            return True
        if kind == "session":
            return _crash(self.system, "router.session")
        if kind == "chat":
            return _crash_a_chat(self.system)
        if kind == "fanout":
            self.last_root_crash = time.monotonic()
            return _crash(self.system, "fanout")
        random.choice(self.agents).kill_next = True
        return True


async def _add_agents(sessionmaker: Any, user_id: uuid.UUID) -> list[tuple[str, str]]:
    agents = []
    async with sessionmaker.begin() as db:
        for n in range(AGENTS):
            agent_id = uuid.uuid4()
            claims = {"sub": str(agent_id), "exp": 253402300799, "user_id": str(user_id)}
            token = jwt.encode(claims, SECRET, algorithm="HS256")
            await AgentRepository(db).add(
                id=agent_id,
                name=f"chaos_{n}",
                alias=f"chaos_{n}",
                description="",
                jwt=token,
                creator_id=user_id,
                input_parameters={},
            )
            agents.append((str(agent_id), token))
    return agents


async def _world(base: str, settings: Settings, sessionmaker: Any) -> tuple[uuid.UUID, str]:
    username = f"chaos_{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=base) as http:
        registered = await http.post(
            "/api/register", json={"username": username, "password": PASSWORD}
        )
        login = await http.post(
            "/api/login/access-token", data={"username": username, "password": PASSWORD}
        )
    user_id = uuid.UUID(registered.json()["id"])
    async with sessionmaker.begin() as db:
        provider = await ProviderRepository(db).add(
            creator_id=user_id,
            name="openai",
            api_key=settings.api_key_cipher().encrypt("sk-chaos"),
            provider_metadata={},
        )
        await ConfigRepository(db).add(
            creator_id=user_id, provider_id=provider.id, name="gpt", model="m", system_prompt="s"
        )
    return user_id, login.json()["access_token"]


async def _count_logs(direct_url: str, agent_ids: list[str]) -> int:
    conn = await asyncpg.connect(_plain(direct_url))
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM logs WHERE agent_id = ANY($1::text[])", agent_ids
        )
        return int(count)
    finally:
        await conn.close()


async def _duplicates(direct_url: str, agent_ids: list[str]) -> int:
    """Logs stored more than once: each (agent, burst, message) is sent once."""
    conn = await asyncpg.connect(_plain(direct_url))
    try:
        count = await conn.fetchval(
            "SELECT count(*) - count(DISTINCT (agent_id, request_id, message)) FROM logs "
            "WHERE agent_id = ANY($1::text[])",
            agent_ids,
        )
        return int(count)
    finally:
        await conn.close()


async def _inactive(direct_url: str, agent_ids: list[str]) -> int:
    conn = await asyncpg.connect(_plain(direct_url))
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM agents WHERE id = ANY($1::uuid[]) AND NOT is_active",
            agent_ids,
        )
        return int(count)
    finally:
        await conn.close()


async def run(direct_url: str, seconds: float) -> dict[str, float]:
    _inject()
    host = make_url(direct_url)
    async with open_proxy(host.host or "127.0.0.1", host.port or 5432) as proxy:
        proxied = host.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)
        files = tempfile.mkdtemp(prefix="chaos-files-")
        settings = Settings(
            HTTP_HOST="127.0.0.1",
            HTTP_PORT=_free_port(),
            ROUTER_HOST="127.0.0.1",
            ROUTER_PORT=_free_port(),
            FILES_DIR=Path(files),
            BCRYPT_ROUNDS=4,
            SHUTDOWN_GRACE_SECONDS=5,
            MASTER_AGENT_TIMEOUT=10,
            MASTER_AGENT="external",  # the instant master below answers
            JWT_SECRET_KEY=SECRET,
        )
        engine = persistence.create_engine(direct_url, pool_size=2, max_overflow=2)
        sessionmaker = persistence.create_sessionmaker(engine)
        try:
            async with open_server(settings, DatabaseSettings(DATABASE_URL=proxied)) as server:
                return await _load_and_faults(
                    server, settings, sessionmaker, proxy, direct_url, seconds
                )
        finally:
            await engine.dispose()


async def _load_and_faults(
    server: Any,
    settings: Settings,
    sessionmaker: Any,
    proxy: TcpProxy,
    direct_url: str,
    seconds: float,
) -> dict[str, float]:
    host, port = server.http_addresses[0]
    base = f"http://{host}:{port}"
    user_id, token = await _world(base, settings, sessionmaker)
    agents = [
        AgentProcess(agent_id, jwt_, server.router_url)
        for agent_id, jwt_ in await _add_agents(sessionmaker, user_id)
    ]
    stats = ChatStats()
    stop_chats, stop_master = anyio.Event(), anyio.Event()
    agent_ids = [agent.agent_id for agent in agents]
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        faults = Faults(server.system, proxy, agents, http)
        async with anyio.create_task_group() as master_group:
            master_group.start_soon(
                _master, server.router_url, settings.MASTER_AGENT_API_KEY, stop_master
            )
            async with anyio.create_task_group() as agent_group:
                for agent in agents:
                    agent_group.start_soon(agent.run)
                async with anyio.create_task_group() as chat_group:
                    for _ in range(CHAT_SESSIONS):
                        chat_group.start_soon(_chat_session, base, token, stats, stop_chats)
                    await faults.run(time.monotonic() + seconds)
                    proxy.restore()
                    stop_chats.set()
                # Every turn has been answered or counted as hung.
                ready = await _ready_after(http, time.monotonic())
                failed_nodes = _failed_nodes(server.system.snapshot())
                # The agents are connected: the registrations must have been applied.
                connected_inactive = await _settled(
                    lambda: _inactive(direct_url, agent_ids), lambda n: n == 0
                )
                for agent in agents:
                    agent.stopping = True
            # The agents have left: every log stored, every unregistration applied.
            sent = sum(agent.sent for agent in agents)
            stored = await _settled(lambda: _count_logs(direct_url, agent_ids), lambda n: n >= sent)
            inactive = await _settled(
                lambda: _inactive(direct_url, agent_ids), lambda n: n == len(agent_ids)
            )
            left_active = len(agent_ids) - inactive
            duplicated = await _duplicates(direct_url, agent_ids)
            stop_master.set()
            master_group.cancel_scope.cancel()
    answered = sum(
        count for session, count in stats.messages.items() if stats.answers[session] == count
    )
    duplicated = sum(
        max(0, stats.answers[session] - count) for session, count in stats.messages.items()
    )
    return {
        "seconds": seconds,
        "turns_sent": stats.sent,
        "turns_answered": answered,
        "turns_duplicated": duplicated,
        "turns_hung": stats.hung,
        "turns_failed": stats.failed,
        "chat_sockets_closed": stats.sockets_closed,
        "logs_sent": sent,
        "logs_stored": stored,
        "logs_duplicated": duplicated,
        "agent_kills": sum(agent.restarts for agent in agents),
        "agents_connected_but_inactive": connected_inactive,
        "agents_gone_but_active": left_active,
        "failed_actors": len(failed_nodes),
        "system_failed": int(server.system.failed),
        "ready_at_end_s": ready,
        "ready_after_s": max(faults.ready_after.values(), default=0.0),
        **{f"faults_{kind}": float(n) for kind, n in sorted(faults.counts.items())},
        **{f"ready_after_{kind}_s": s for kind, s in sorted(faults.ready_after.items())},
    }


async def main(seconds: float, seed: int) -> None:
    random.seed(seed)
    print(f"seed={seed}", flush=True)
    async with open_bench_database("genai_chaos") as database_url:
        results = await run(database_url, seconds)
    for key, value in results.items():
        print(f"{key}={value:.0f}" if float(value).is_integer() else f"{key}={value:.2f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--agent"]:
        asyncio.run(_agent(*sys.argv[2:5]))
    else:
        seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 180.0
        seed = int(sys.argv[2]) if len(sys.argv) > 2 else random.randrange(1_000_000)
        asyncio.run(main(seconds, seed))
