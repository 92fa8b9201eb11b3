"""Agent logs pushed across processes: the CPU a pushed log costs on the side that
stores it and on the side whose socket gets it.

Run: ``python -m bench.xlogs [sessions] [logs per session]``. Prints one ``name=value``
per line.

Two back-ends on one database, each in a thread of its own with its own event loop and
actor system (so that each side's CPU is its thread's CPU time): the storing side runs
the registry (with its process id, so every committed batch notifies ``genai_logs``),
its log fan-out and its relay; the receiving side runs a fan-out and a relay. Every
session's owner has a socket (a `SocketOutbox` drained by a task that only counts the
frames) on one side. The logs are told to the storing side's registry as the router
session tells them, one session per agent.

Phases, on the same throw-away database (``BENCH_POSTGRES``, see `bench.logs`):

- ``single``: the sockets on the storing side, as with one process: store and push.
  ``single_cpu_us_per_log`` is that thread's CPU per pushed log.
- ``cross``: the sockets on the other side. ``cross_sender_cpu_us_per_log`` is the
  storing side's CPU per log (store and notify), ``cross_receiver_cpu_us_per_log`` the
  receiving side's (hear the notices, read the rows once, push).
- ``push``: the fan-out alone, told the stored logs (no database): the push itself.

``ratio_receiver_vs_single`` is the receiving side's CPU per log over the whole
single-process cost; ``ratio_receiver_vs_push`` over the bare push.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

import persistence
from actors.fanout import (
    LogFanout,
    LogFanoutClient,
    SocketOutbox,
    Subscriptions,
    log_fanout_spec,
    log_relay_spec,
)
from actors.registry import RegistryActor, RegistryConfig, registry_spec
from actors.session import AgentLogged
from persistence import LogRepository
from runtime import ChildSpec, open_actor_system

from .logs import SECRET, _add_agents, open_bench_database


class Side:
    """One back-end: a thread, its loop, its systems; CPU measured on its thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.frames = 0
        self.cpu = 0.0

    def thread_cpu(self) -> float:
        return time.thread_time()


def _drain_all(outboxes: list[SocketOutbox], side: Side, tg: Any) -> None:
    async def drain(outbox: SocketOutbox) -> None:
        async for _ in outbox.frames():
            side.frames += 1

    for outbox in outboxes:
        tg.start_soon(drain, outbox)


async def _wait_until(check: Callable[[], bool], within: float = 120.0) -> None:
    with anyio.move_on_after(within):
        while not check():  # noqa: ASYNC110 - counters only
            await anyio.sleep(0.002)


def _in_thread(fn: Callable[[], Awaitable[None]]) -> threading.Thread:
    thread = threading.Thread(target=lambda: asyncio.run(fn()))  # type: ignore[arg-type]
    thread.start()
    return thread


async def _phase(
    database_url: str,
    events: list[AgentLogged],
    keys: list[tuple[uuid.UUID, uuid.UUID]],
    *,
    sockets_on_sender: bool,
) -> tuple[Side, Side]:
    """Run one phase; return the storing and the receiving side with their CPU."""
    total = len(events)
    sender, receiver = Side("sender"), Side("receiver")
    watcher = sender if sockets_on_sender else receiver
    ready = [threading.Event(), threading.Event()]
    go, done = threading.Event(), threading.Event()

    async def run_side(side: Side, index: int, *, stores: bool, sockets: bool) -> None:
        engine = persistence.create_engine(database_url, pool_size=5, max_overflow=5)
        sessionmaker = persistence.create_sessionmaker(engine)
        process = uuid.uuid4()
        subscriptions = Subscriptions()
        specs: list[ChildSpec] = [
            log_fanout_spec(subscriptions=subscriptions),
            log_relay_spec(engine.url, sessionmaker, process, subscriptions),
        ]
        outboxes = [SocketOutbox(capacity=total + 1) for _ in keys]
        try:
            async with open_actor_system(*specs) as system, anyio.create_task_group() as tg:
                if stores:
                    config = RegistryConfig(SECRET, process_id=process)
                    sink = LogFanoutClient(system)
                    await system.start(registry_spec(config, sessionmaker, session=None, sink=sink))
                relay = system.ref_of("logrelay")._cell.instance
                await _wait_until(lambda: relay.cursor.last is not None, 10)
                if sockets:
                    client = LogFanoutClient(system)
                    for (user, session), outbox in zip(keys, outboxes, strict=True):
                        await client.subscribe(user, session, outbox)
                    _drain_all(outboxes, side, tg)
                ready[index].set()
                await anyio.to_thread.run_sync(go.wait)
                cpu = side.thread_cpu()
                if stores:
                    ref = system.ref_of("registry")
                    for event in events:
                        await ref.tell(event)
                    registry = ref._cell.instance
                    assert isinstance(registry, RegistryActor)
                    await _wait_until(lambda: registry.statistics().written >= total)
                if side is watcher:
                    await _wait_until(lambda: side.frames >= total)
                    side.cpu = side.thread_cpu() - cpu
                    done.set()
                else:
                    side.cpu = side.thread_cpu() - cpu
                    await anyio.to_thread.run_sync(done.wait)
                for outbox in outboxes:
                    outbox.close()
        finally:
            await engine.dispose()

    threads = [
        _in_thread(lambda: run_side(sender, 0, stores=True, sockets=sockets_on_sender)),
        _in_thread(lambda: run_side(receiver, 1, stores=False, sockets=not sockets_on_sender)),
    ]
    for event in ready:
        await anyio.to_thread.run_sync(event.wait, abandon_on_cancel=True)
    go.set()
    for thread in threads:
        await anyio.to_thread.run_sync(thread.join)
    if watcher.frames != total:
        raise RuntimeError(f"{watcher.frames} of {total} logs pushed")
    return sender, receiver


async def _push_alone(database_url: str, keys: list[tuple[uuid.UUID, uuid.UUID]]) -> float:
    """CPU microseconds per log of the fan-out alone, told the stored logs."""
    engine = persistence.create_engine(database_url)
    sessionmaker = persistence.create_sessionmaker(engine)
    async with sessionmaker() as db:
        logs = await LogRepository(db).since(0, {s for _, s in keys}, limit=10**9, seconds=3600)
    await engine.dispose()
    side = Side("push")
    outboxes = [SocketOutbox(capacity=len(logs) + 1) for _ in keys]
    async with (
        open_actor_system(log_fanout_spec()) as system,
        anyio.create_task_group() as tg,
    ):
        client = LogFanoutClient(system)
        for (user, session), outbox in zip(keys, outboxes, strict=True):
            await client.subscribe(user, session, outbox)
        _drain_all(outboxes, side, tg)
        assert isinstance(system.ref_of("fanout")._cell.instance, LogFanout)
        cpu = time.thread_time()
        for start in range(0, len(logs), 5000):
            await client.logs_stored(logs[start : start + 5000])
        await _wait_until(lambda: side.frames >= len(logs))
        cpu = time.thread_time() - cpu
        for outbox in outboxes:
            outbox.close()
    return cpu / len(logs) * 1e6


async def run(database_url: str, sessions: int, per_session: int) -> dict[str, float]:
    engine = persistence.create_engine(database_url)
    sessionmaker = persistence.create_sessionmaker(engine)
    agents = await _add_agents(sessionmaker, sessions)
    async with sessionmaker() as db:
        user = (await persistence.UserRepository(db).get_by_username("bench")).id  # type: ignore[union-attr]
    await engine.dispose()

    def plan() -> tuple[list[AgentLogged], list[tuple[uuid.UUID, uuid.UUID]]]:
        events, keys = [], []
        for agent_id, _ in agents:
            session, request = uuid.uuid4(), str(uuid.uuid4())
            keys.append((user, session))
            events += [
                AgentLogged(agent_id, str(session), request, "info", f"step {n}", "caller#1")
                for n in range(per_session)
            ]
        return events, keys

    events, keys = plan()
    single, _ = await _phase(database_url, events, keys, sockets_on_sender=True)
    push = await _push_alone(database_url, keys)
    events, keys = plan()
    sender, receiver = await _phase(database_url, events, keys, sockets_on_sender=False)
    total = len(events)
    single_us = single.cpu / total * 1e6
    receiver_us = receiver.cpu / total * 1e6
    return {
        "sessions": sessions,
        "logs": total,
        "single_cpu_us_per_log": single_us,
        "push_cpu_us_per_log": push,
        "cross_sender_cpu_us_per_log": sender.cpu / total * 1e6,
        "cross_receiver_cpu_us_per_log": receiver_us,
        "ratio_receiver_vs_single": receiver_us / single_us,
        "ratio_receiver_vs_push": receiver_us / push,
    }


async def main(sessions: int, per_session: int) -> None:
    async with open_bench_database("genai_xlogs") as database_url:
        results = await run(database_url, sessions, per_session)
    for key, value in results.items():
        print(f"{key}={value:.0f}" if float(value).is_integer() else f"{key}={value:.2f}")


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:3]]
    asyncio.run(main(*(args + [50, 400][len(args) :])))
