"""Router roles: back-ends that do not own the router they use.

Several back-ends share one router, standalone (``genai-backend router``, a real
process) or embedded in another back-end: each agent event is applied once, a chat
turn's reply reaches the back-end whose user asked, and a back-end's start or stop
leaves the agents of the router as they are.
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select, text
from websockets.asyncio.client import connect

from actors.registry import RegistryClient
from persistence import AgentRepository, Log

from ..actors.agents import invoke_echo, start_agent
from ..faults.conftest import make_world, open_master, open_sessionmaker, receive, wait_ready
from ..test_cli import free_port, router_process
from .conftest import Backend, make_settings, open_backend

if TYPE_CHECKING:
    from pathlib import Path

    from anyio.abc import Process, TaskGroup, TaskStatus
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from web import Settings

    from ..faults.conftest import World


async def is_active(sessionmaker: async_sessionmaker[AsyncSession], agent_id: str) -> bool:
    async with sessionmaker() as db:
        agent = await AgentRepository(db).get_any_owner(uuid.UUID(agent_id))
        return bool(agent is not None and agent.is_active)


async def wait_active(
    sessionmaker: async_sessionmaker[AsyncSession], agent_id: str, within: float = 15.0
) -> None:
    with anyio.fail_after(within):
        # The database has no change notification here; poll it.
        while not await is_active(sessionmaker, agent_id):  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def logs_of(sessionmaker: async_sessionmaker[AsyncSession], request_id: str) -> list[str]:
    async with sessionmaker() as db:
        query = select(Log.message).where(Log.request_id == uuid.UUID(request_id))
        return list(await db.scalars(query))


async def agent_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> list[Any]:
    """Every column of every agent row, ordered: what "no row changed" compares."""
    async with sessionmaker() as db:
        return list((await db.execute(text("SELECT * FROM agents ORDER BY id"))).all())


async def registered(backend: Backend) -> int:
    stats = await RegistryClient(backend.server.system.ref_of("registry")).statistics()
    return stats.registered


async def logged_once(sessionmaker: async_sessionmaker[AsyncSession], request_id: str) -> None:
    """Each log of the call (the echo agent's own, and the 2.x library's start and end of
    the execution) is stored, and only once."""
    with anyio.fail_after(10):
        while not await logs_of(sessionmaker, request_id):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    # A second back-end storing it too would do so within the same few milliseconds.
    await anyio.sleep(0.5)
    logs = await logs_of(sessionmaker, request_id)
    assert "echo hi" in logs
    assert len(logs) == len(set(logs)), logs


async def chat(world: World, backend: Backend) -> str:
    """One chat turn on ``backend``: the master's answer comes back to its socket.

    Returns:
        The turn's session id.
    """
    session_id = uuid.uuid4()
    ws_base = backend.base.replace("http://", "ws://")
    async with connect(f"{ws_base}/frontend/ws?token={world.token}&session_id={session_id}") as ws:
        await ws.send(world.message("hello"))
        frame = await receive(ws)
    assert frame["response"]["response"]["response"] == f"answer for {session_id}", frame
    return str(session_id)


class Running:
    """A back-end run in its own task, so that back-ends stop in any order."""

    def __init__(self, backend: Backend, stop: anyio.Event) -> None:
        self.backend = backend
        self._stop = stop
        self.stopped = anyio.Event()

    async def stop(self) -> None:
        self._stop.set()
        with anyio.fail_after(20):
            await self.stopped.wait()


async def start_backend(tg: TaskGroup, settings: Settings, database_url: str) -> Running:
    """Start a back-end in ``tg``; return once it is ready."""

    async def run(*, task_status: TaskStatus[Running]) -> None:
        stop = anyio.Event()
        async with open_backend(settings, database_url) as backend:
            await wait_ready(backend.base)
            running = Running(backend, stop)
            task_status.started(running)
            await stop.wait()
        running.stopped.set()

    running: Running = await tg.start(run)
    return running


class TestStandaloneRouter:
    async def test_two_backends_share_it_and_each_event_is_applied_once(
        self,
        tmp_path: Path,
        database_url: str,
        processes: list[Process],
    ) -> None:
        with router_process(tmp_path, free_port(), database_url) as router:
            await router.wait_ready()
            first = make_settings(tmp_path, ROUTER_WS_URL=router.url)
            second = make_settings(tmp_path, ROUTER_WS_URL=router.url)
            async with (
                open_sessionmaker(database_url) as sessionmaker,
                open_master(router.url, first.MASTER_AGENT_API_KEY) as master,
                anyio.create_task_group() as tg,
            ):
                running = await start_backend(tg, first, database_url)
                one = running.backend
                other = await start_backend(tg, second, database_url)
                two = other.backend
                master.release("*")
                world = await make_world(one.base, first, sessionmaker)
                user = await one.user()
                agent = await one.agent(user)
                await start_agent(sys.executable, "echo", router.url, agent.jwt, processes)
                await wait_active(sessionmaker, agent.id)
                # The first back-end to connect gets the agents' events; the other waits.
                with anyio.fail_after(10):
                    # Counted just after the commit that the row shows.
                    while await registered(one) == 0:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                assert (await registered(one), await registered(two)) == (1, 0)
                await logged_once(
                    sessionmaker,
                    await invoke_echo(router.url, first.MASTER_AGENT_API_KEY, agent.id, "hi"),
                )

                # A turn through either back-end reaches the master and comes back to it.
                asked = [await chat(world, one), await chat(world, two)]
                assert {sid: master.seen[sid] for sid in asked} == {sid: 1 for sid in asked}

                # The first stops: the agent stays active, and the other back-end takes
                # its events over (sent the registrations the router holds).
                await running.stop()
                with anyio.fail_after(10):
                    while await registered(two) == 0:  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                assert await is_active(sessionmaker, agent.id)
                await logged_once(
                    sessionmaker,
                    await invoke_echo(router.url, second.MASTER_AGENT_API_KEY, agent.id, "hi"),
                )
                await chat(world, two)
                assert await is_active(sessionmaker, agent.id)
                await other.stop()
            assert router.proc.poll() is None
            assert await router.stop() == 0


class TestBackendOnAnotherBackendsRouter:
    async def test_its_start_and_stop_change_no_agent_row(
        self, tmp_path: Path, database_url: str, processes: list[Process]
    ) -> None:
        async with (
            open_sessionmaker(database_url) as sessionmaker,
            anyio.create_task_group() as tg,
        ):
            owner = await start_backend(tg, make_settings(tmp_path), database_url)
            first = owner.backend
            user = await first.user()
            agent = await first.agent(user)
            idle = await first.agent(user, "idle agent")  # never connects: stays inactive
            await first.start_agent(sys.executable, agent, processes)
            await wait_active(sessionmaker, agent.id)
            before = await agent_rows(sessionmaker)
            assert not await is_active(sessionmaker, idle.id)

            # Its own free ports, and the first one's router.
            settings = make_settings(tmp_path, ROUTER_WS_URL=first.router_url)
            starting = anyio.Event()
            snapshots: list[list[Any]] = []

            async def watch() -> None:
                # Every few milliseconds while the second back-end starts.
                while not starting.is_set():
                    snapshots.append(await agent_rows(sessionmaker))
                    await anyio.sleep(0.005)

            tg.start_soon(watch)
            second = await start_backend(tg, settings, database_url)
            starting.set()
            # Its registry has applied whatever it queued at start.
            its_registry = RegistryClient(second.backend.server.system.ref_of("registry"))
            with anyio.fail_after(10):
                while (await its_registry.statistics()).pending_events:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            await anyio.sleep(0.3)
            assert await agent_rows(sessionmaker) == before
            assert snapshots and all(rows == before for rows in snapshots)
            # The embedded router keeps the first back-end current; the second waits.
            assert (await first.table_stats()).standby_backends == 1
            assert await registered(second.backend) == 0

            await second.stop()
            await anyio.sleep(0.3)
            assert await agent_rows(sessionmaker) == before
            assert (await first.table_stats()).standby_backends == 0
            await owner.stop()
