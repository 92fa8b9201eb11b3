"""Each accepted log is stored exactly once: not twice when a commit's answer is lost,
and not lost when the registry crashes and restarts with logs still waiting."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from actors.registry import RegistryActor, RegistryConfig
from persistence import Log, LogRepository, NewLog
from runtime import ActorState, Backoff
from runtime.testing import wait_for
from tests.actors.router.conftest import open_peer

from ..agents import RecordingSink, add_agent, is_active, open_stack, wait_active, wait_stat
from .test_outage import _own_database_url, _own_sessionmaker, set_reachable  # noqa: F401
from .test_registry import log_frame

CONFIG = RegistryConfig(
    "registry-test-secret-of-at-least-32-bytes",
    retry=Backoff(initial=0.02, maximum=0.1, reset_after=0.0),
)


async def count_logs(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as db:
        return int(await db.scalar(select(func.count()).select_from(Log)) or 0)


async def test_a_batch_written_again_with_its_ids_is_stored_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    sid, rid = uuid.uuid4(), uuid.uuid4()
    batch = [NewLog(sid, rid, "a", f"m{n}", "info") for n in range(3)]
    async with sessionmaker.begin() as db:
        ids = await LogRepository(db).allocate_ids(len(batch))
    async with sessionmaker.begin() as db:
        first = await LogRepository(db).add_many(batch, ids=ids)
    async with sessionmaker.begin() as db:
        again = await LogRepository(db).add_many(batch, ids=ids)
    assert [e.id for e in first] == ids
    # Nothing written twice; the batch reads as stored.
    assert [(e.id, e.message) for e in again] == [(e.id, e.message) for e in first]
    assert await count_logs(sessionmaker) == 3


@dataclass
class LosesACommitAnswer:
    """A sessionmaker whose first commit after a log insert succeeds on the server but
    answers the caller with a lost connection, as a cut between COMMIT and its reply."""

    sessionmaker: async_sessionmaker[AsyncSession]
    inserted: bool = False
    lost: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.sessionmaker(*args, **kwargs)

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker.begin() as db:
            yield db
        if self.inserted and not self.lost:
            self.lost = True
            raise ConnectionResetError("connection lost before the COMMIT was answered")


async def test_a_commit_whose_answer_is_lost_does_not_store_the_logs_twice(
    sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    agent_id, _, token = await add_agent(sessionmaker)
    flaky = LosesACommitAnswer(sessionmaker)
    add_many = LogRepository.add_many

    async def noting(self: LogRepository, *args: Any, **kwargs: Any) -> Any:
        flaky.inserted = True
        return await add_many(self, *args, **kwargs)

    monkeypatch.setattr(LogRepository, "add_many", noting)
    sink = RecordingSink()
    sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    async with (
        open_stack(flaky, sink=sink, config=CONFIG) as stack,  # type: ignore[arg-type]
        open_peer(stack.url, **{"X-Custom-Authorization": token}) as agent,
    ):
        for n in range(50):
            await agent.send(log_frame(agent_id, sid, rid, f"log {n}"))
        await wait_stat(stack, "retries", 1)
        await wait_for(lambda: stack.registry.statistics().buffered == 0, timeout=10)
    assert flaky.lost
    assert await count_logs(sessionmaker) == 50
    # Pushed live once each: the attempt whose answer was lost pushed nothing.
    assert sorted(e.message for e in sink.entries) == sorted(f"log {n}" for n in range(50))


async def test_a_registry_restarted_after_a_crash_keeps_what_it_accepted(
    own_database_url: str, own_sessionmaker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessionmaker = own_sessionmaker
    agent_id, _, token = await add_agent(sessionmaker)
    handle = RegistryActor.handle

    async def crashing(self: RegistryActor, message: Any) -> Any:
        if message == "bug":
            raise RuntimeError("a bug in the registry")
        return await handle(self, message)

    monkeypatch.setattr(RegistryActor, "handle", crashing)
    sid, rid = str(uuid.uuid4()), str(uuid.uuid4())
    async with (
        open_stack(sessionmaker, config=CONFIG) as stack,
        open_peer(stack.url, **{"X-Custom-Authorization": token}) as agent,
    ):
        register = {"message_type": "agent_register", "request_payload": {"agent_name": "a"}}
        await agent.send(register)
        await wait_active(sessionmaker, agent_id, True, within=10)
        await set_reachable(own_database_url, False)
        for n in range(100):
            await agent.send(log_frame(agent_id, sid, rid, f"waiting {n}"))
        await wait_stat(stack, "retries", 2)
        await stack.system.ref_of("registry").tell("bug")

        def restarted() -> bool:
            info = stack.system.snapshot().find("registry")
            return info is not None and info.restarts == 1 and info.state is ActorState.RUNNING

        await wait_for(restarted, timeout=10)
        await set_reachable(own_database_url, True)
        await wait_for(lambda: stack.registry.statistics().buffered == 0, timeout=20)
        # The agent is still connected: the restart did not mark it inactive again.
        assert await is_active(sessionmaker, agent_id)
    async with sessionmaker() as db:
        messages = (await db.scalars(select(Log.message))).all()
    assert sorted(messages) == sorted(f"waiting {n}" for n in range(100))
