"""Shared helpers for the session and registry tests: agent rows and tokens, the
back-end's part of the supervision tree on a real router, and real agents.

Real agents come from the router tests' helpers (2.0.3 in process or as a subprocess,
1.0.9 from the cached venv).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import uuid
from typing import TYPE_CHECKING

import anyio
import jwt
from genai_session.session import GenAISession
from websockets.asyncio.client import connect

from actors.registry import LogSink, RegistryActor, RegistryConfig, registry_spec
from actors.router import RouterConfig, router_children
from actors.router._identity import DEFAULT_MASTER_BE_API_KEY
from actors.session import RouterSessionClient, SessionConfig, router_session_spec
from persistence import AgentRepository, ChatRepository, LogEntry, UserRepository
from runtime import (
    Backoff,
    ChildSpec,
    RestartIntensity,
    Strategy,
    Supervisor,
    open_actor_system,
)
from runtime.testing import wait_for

from .router.conftest import AGENT_SCRIPT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence
    from pathlib import Path

    from anyio.abc import Process
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from runtime import ActorSystem

SECRET = "registry-test-secret-of-at-least-32-bytes"
BACKEND_KEY = DEFAULT_MASTER_BE_API_KEY


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def mint_jwt(agent_id: uuid.UUID | str, user_id: uuid.UUID | str, secret: str = SECRET) -> str:
    """Mint an agent JWT as the back-end issues it (API.md §3.4)."""
    claims = {"sub": str(agent_id), "exp": 253402300799, "user_id": str(user_id)}
    return jwt.encode(claims, secret, algorithm="HS256")


async def add_agent(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    name: str = "my_agent",
    user_id: uuid.UUID | None = None,
) -> tuple[uuid.UUID, uuid.UUID, str]:
    """Create a user (unless given) and an inactive agent row; return (agent, user, jwt)."""
    agent_id = uuid.uuid4()
    async with sessionmaker.begin() as db:
        if user_id is None:
            user = await UserRepository(db).add(f"user-{uuid.uuid4().hex[:10]}", "x")
            user_id = user.id
        token = mint_jwt(agent_id, user_id)
        await AgentRepository(db).add(
            id=agent_id,
            name=name,
            alias=f"{name}_{uuid.uuid4().hex[:6]}",
            description="",
            jwt=token,
            creator_id=user_id,
            input_parameters={},
        )
    return agent_id, user_id, token


async def add_conversation(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    async with sessionmaker.begin() as db:
        await ChatRepository(db).create_conversation(session_id, owner_id=user_id, title="t")


async def is_active(sessionmaker: async_sessionmaker[AsyncSession], agent_id: uuid.UUID) -> bool:
    async with sessionmaker() as db:
        agent = await AgentRepository(db).get_any_owner(agent_id)
        return bool(agent is not None and agent.is_active)


async def wait_active(
    sessionmaker: async_sessionmaker[AsyncSession],
    agent_id: uuid.UUID,
    expected: bool,
    within: float,
) -> None:
    with anyio.fail_after(within):
        # The database has no change notification here; poll it.
        while await is_active(sessionmaker, agent_id) is not expected:  # noqa: ASYNC110
            await anyio.sleep(0.002)


class RecordingSink:
    """A `LogSink` that keeps every entry it is given."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    async def logs_stored(self, logs: Sequence[LogEntry]) -> None:
        self.entries.extend(logs)


class Stack:
    """The back-end's registry and router (embedded router + session) in one system."""

    def __init__(self, system: ActorSystem, url: str, port: int) -> None:
        self.system = system
        self.url = url
        self.port = port

    @property
    def session(self) -> RouterSessionClient:
        return RouterSessionClient(self.system.ref_of("router.session"))

    @property
    def registry(self) -> RegistryActor:
        instance = self.system.ref_of("registry")._cell.instance
        assert isinstance(instance, RegistryActor)
        return instance


@contextlib.asynccontextmanager
async def open_stack(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    sink: LogSink | None = None,
    config: RegistryConfig | None = None,
    session_backoff: Backoff | None = None,
) -> AsyncIterator[Stack]:
    """Run registry + router supervisor (hub, session) on a free port."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    router = Supervisor(
        [
            *router_children(RouterConfig(port=port, ping_interval=None)),
            router_session_spec(
                SessionConfig(url, BACKEND_KEY, ping_interval=None),
                backoff=session_backoff or Backoff(initial=0.05, maximum=0.5),
            ),
        ],
        strategy=Strategy.REST_FOR_ONE,
        intensity=RestartIntensity(20, 10.0),
    )
    specs = [
        registry_spec(config or RegistryConfig(SECRET), sessionmaker, sink=sink),
        ChildSpec("router", lambda: router),
    ]
    async with open_actor_system(*specs, name="backend") as system:
        yield Stack(system, url, port)


def library_session(url: str, token: str) -> GenAISession:
    """A 2.0.3 session in this process, configured as its environment would."""
    session = GenAISession()
    session.jwt_token = token
    session.ws_url = url
    session.is_local_setup = True
    return session


async def start_agent(
    python: Path | str, role: str, url: str, token: str, processes: list[Process]
) -> Process:
    """Run ``agent_script.py`` (the router tests' real agent) as a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    process = await anyio.open_process(
        [str(python), str(AGENT_SCRIPT), role, url, token],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes.append(process)
    return process


async def stop_processes(processes: list[Process]) -> None:
    with anyio.CancelScope(shield=True):
        for process in processes:
            if process.returncode is None:
                process.kill()
            await process.wait()
            await process.aclose()


async def wait_stat(stack: Stack, name: str, value: int, within: float = 10.0) -> None:
    await wait_for(lambda: getattr(stack.registry.statistics(), name) >= value, timeout=within)


async def invoke_echo(
    router_url: str,
    master_key: str,
    agent_id: str,
    text: str,
    session_id: str | None = None,
    *,
    request_id: str | None = None,
) -> str:
    """Invoke the echo agent as a master's ``send()`` does (its own socket, keyed by the
    master's API key), in ``session_id`` (and for ``request_id``: a new one if None);
    check its answer; return the request id it logs under."""
    request_id = request_id or str(uuid.uuid4())
    key = {"x-custom-invoke-key": f"{master_key}:{agent_id}"}
    metadata = {"request_id": request_id, "session_id": session_id or str(uuid.uuid4())}
    async with connect(router_url, additional_headers=key) as caller:
        await caller.send(
            json.dumps(
                {
                    "message_type": "agent_invoke",
                    "agent_uuid": agent_id,
                    "request_payload": {"text": text},
                    "request_metadata": metadata,
                }
            )
        )
        with anyio.fail_after(10):
            reply = json.loads(await caller.recv())
    assert reply["response"]["text"] == text, reply
    return request_id
