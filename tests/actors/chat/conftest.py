"""Fixtures for chat actor tests: users, providers and configs in a real database, a
scripted master agent edge, and a running chat supervisor."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.chat import ChatDeps, ChatsClient, ChatSession, chat_supervisor_spec
from actors.fanout import LogFanoutClient, log_fanout_spec
from actors.session import MasterAgentError, MasterReplied, MasterReply, MasterTimeoutError
from persistence import (
    ApiKeyCipher,
    ConfigRepository,
    ProviderRepository,
    UserRepository,
)
from runtime import ActorRef, ActorSystem, open_actor_system

CIPHER = ApiKeyCipher({"k1": "chat-test-secret"})


class FakeMasterError(MasterAgentError):
    """A failed master call as the router session reports it: ``str()`` is the user text."""


@dataclass(frozen=True)
class Answer:
    response: Any
    execution_time: float


@dataclass
class FakeMaster:
    """A `MasterInvoker` edge: records every call and answers with ``script``.

    Like the router session, it owns each invocation's deadline and tells the outcome
    to the caller as a `MasterReplied`; run it inside `serving`. ``crash_next`` is
    raised by the next `invoke_master` itself (a bug at the edge).
    """

    script: Callable[[Mapping[str, Any]], Awaitable[Any]] | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    crash_next: Exception | None = None
    ref: ActorRef[Any] | None = None
    _tasks: TaskGroup | None = None
    _scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            yield
            tasks.cancel_scope.cancel()

    async def invoke_master(
        self,
        payload: Mapping[str, Any],
        *,
        request_id: str,
        session_id: str,
        timeout: float,  # noqa: ASYNC109
        reply_to: ActorRef[MasterReplied],
    ) -> None:
        self.calls.append(
            {
                "payload": dict(payload),
                "request_id": request_id,
                "session_id": session_id,
                "timeout": timeout,
            }
        )
        if self.crash_next is not None:
            error, self.crash_next = self.crash_next, None
            raise error
        assert self._tasks is not None, "run the fake master inside serving()"
        scope = self._scopes[request_id] = anyio.CancelScope(
            deadline=anyio.current_time() + timeout
        )
        self._tasks.start_soon(self._answer, payload, request_id, timeout, reply_to, scope)

    def cancel_master(self, request_id: str) -> None:
        self.cancelled.append(request_id)
        scope = self._scopes.get(request_id)
        if scope is not None:
            scope.cancel()

    async def _answer(
        self,
        payload: Mapping[str, Any],
        request_id: str,
        timeout: float,  # noqa: ASYNC109
        reply_to: ActorRef[MasterReplied],
        scope: anyio.CancelScope,
    ) -> None:
        outcome: MasterReply | MasterAgentError | None = None
        with scope:
            try:
                answer = await self.script(payload) if self.script is not None else None
            except MasterAgentError as exc:
                outcome = exc
            else:
                if answer is None:
                    answer = Answer({"response": "hi", "agents_trace": [], "is_success": True}, 1.5)
                outcome = MasterReply(answer.response, answer.execution_time)
        if outcome is None:
            if request_id in self.cancelled:
                return
            outcome = MasterTimeoutError(timeout)
        await reply_to.tell(MasterReplied(request_id, outcome))


@dataclass
class Owner:
    id: uuid.UUID
    provider: str
    config: str


class World:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def user(
        self,
        *,
        provider: str = "openai",
        config: str = "gpt",
        api_key: str | None = "sk-plain",
        metadata: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
    ) -> Owner:
        async with self.sessionmaker.begin() as session:
            user = await UserRepository(session).add(f"u{uuid.uuid4().hex[:10]}", "hash")
            row = await ProviderRepository(session).add(
                creator_id=user.id,
                name=provider,
                api_key=CIPHER.encrypt(api_key) if api_key else None,
                provider_metadata=metadata if metadata is not None else {"endpoint": "http://e"},
            )
            await ConfigRepository(session).add(
                creator_id=user.id,
                provider_id=row.id,
                name=config,
                model="gpt-4o",
                system_prompt="be nice",
                user_prompt="",
                temperature=0.7,
                max_last_messages=3,
                credentials=credentials if credentials is not None else {"deployment_name": "dep"},
            )
        return Owner(user.id, provider, config)


@pytest.fixture(name="world")
def _world(sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    return World(sessionmaker)


@pytest.fixture(name="master")
def _master() -> FakeMaster:
    return FakeMaster()


@dataclass
class Running:
    system: ActorSystem
    chats: ChatsClient
    fanout: LogFanoutClient


@pytest.fixture(name="deadline")
def _deadline() -> float:
    return 5.0


@pytest.fixture(name="running")
async def _running(
    sessionmaker: async_sessionmaker[AsyncSession], master: FakeMaster, deadline: float
) -> AsyncIterator[Running]:
    deps = ChatDeps(sessionmaker, master, CIPHER, master_timeout=deadline)
    async with (
        master.serving(),
        open_actor_system(chat_supervisor_spec(deps), log_fanout_spec()) as system,
    ):
        fanout = LogFanoutClient(system)
        yield Running(system, ChatsClient(system, fanout=fanout), fanout)


async def next_frame(chat: ChatSession, within: float = 5.0) -> dict[str, Any]:
    with anyio.fail_after(within):
        frame: dict[str, Any] = json.loads(await chat.outbox.receive())
    return frame
