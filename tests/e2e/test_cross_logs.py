"""Agent logs reach the owner's socket on another back-end process.

Two servers (`open_server`) share one database; the second uses the first's embedded
router (``ROUTER_WS_URL``), so every agent log is stored by the first. The owner's
socket is on the second: a chat turn there, through a scripted 1.0.9 master and a real
2.0.3 agent, brings each of the turn's logs to it once, as the first's ``NOTIFY
genai_logs`` tells the second's relay which rows to read. Then the second's database
connections are cut (a `TcpProxy`) while the agent logs again: on reconnecting, its relay
reads what it missed, and the socket gets those logs too, once.
"""

from __future__ import annotations

import sys
import uuid
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import select

from actors.fanout import LogRelay
from persistence import Log

from ..actors.agents import invoke_echo
from ..faults.conftest import open_sessionmaker, wait_ready
from ..faults.proxy import open_database_proxy
from .conftest import make_settings, open_backend

if TYPE_CHECKING:
    from pathlib import Path

    from anyio.abc import Process
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from .conftest import Backend, Frontend


async def stored(sessionmaker: async_sessionmaker[AsyncSession], request_id: str) -> list[str]:
    """The messages stored under ``request_id``, in the order they were stored."""
    async with sessionmaker() as db:
        query = select(Log.message).where(Log.request_id == uuid.UUID(request_id)).order_by(Log.id)
        return list(await db.scalars(query))


async def settled(sessionmaker: async_sessionmaker[AsyncSession], request_id: str) -> list[str]:
    """Wait until the logs of ``request_id`` stop coming (the 2.x library's last one
    follows the reply); return them."""
    with anyio.fail_after(15):
        previous: list[str] = []
        while True:
            await anyio.sleep(0.5)
            now = await stored(sessionmaker, request_id)
            if now and now == previous:
                return now
            previous = now


def received(ui: Frontend, request_id: str) -> list[str]:
    return [f["log"]["message"] for f in ui.logs if f["log"]["request_id"] == request_id]


def relay_of(backend: Backend) -> LogRelay:
    instance = backend.server.system.ref_of("logrelay")._cell.instance
    assert isinstance(instance, LogRelay)
    return instance


async def test_logs_reach_the_owner_on_the_other_process_once(
    tmp_path: Path, database_url: str, processes: list[Process], python_109: Path
) -> None:
    first_settings = make_settings(tmp_path)
    async with (
        open_sessionmaker(database_url) as sessionmaker,
        open_backend(first_settings, database_url) as first,
        open_database_proxy(database_url) as (proxy, proxied),
    ):
        await first.wait_session()
        second_settings = make_settings(tmp_path, ROUTER_WS_URL=first.router_url)
        async with open_backend(second_settings, proxied) as second:
            await wait_ready(second.base)
            owner = await second.user()
            await second.add_model(owner)
            agent = await second.agent(owner, "echo new")
            await first.start_agent(sys.executable, agent, processes)
            await first.start_master(python_109, processes)
            session_id = str(uuid.uuid4())

            async with second.frontend(owner, session_id) as ui:
                # A turn on the second: the first stores its logs, the second pushes them.
                await ui.say("hello agents")
                frame = await ui.response(within=20)
                assert frame["response"]["response"]["is_success"] is True, frame
                request_id = frame["response"]["request_id"]
                logs = await settled(sessionmaker, request_id)
                assert "echo hello agents" in logs
                await ui.wait_logs(lambda _: len(received(ui, request_id)) >= len(logs))
                assert await ui.silent_for(0.5) == []
                # Each stored log once, in the order stored.
                assert received(ui, request_id) == logs
                assert all(f["log"]["creator_id"] == owner.id for f in ui.logs)
                relay = relay_of(second)
                assert relay.relayed >= len(logs)
                assert relay_of(first).relayed == 0  # the first pushes its own locally

                # The second's database connections are cut while the agent logs.
                connects = relay.connects
                proxy.cut()
                request_id = await invoke_echo(
                    first.router_url,
                    first_settings.MASTER_AGENT_API_KEY,
                    agent.id,
                    "while cut",
                    session_id,
                )
                logs = await settled(sessionmaker, request_id)
                assert "echo while cut" in logs
                assert received(ui, request_id) == []
                proxy.restore()
                with anyio.fail_after(20):
                    while relay.connects == connects:  # noqa: ASYNC110 - counters only
                        await anyio.sleep(0.05)
                await ui.wait_logs(lambda _: len(received(ui, request_id)) >= len(logs), within=15)
                assert await ui.silent_for(0.5) == []
                assert received(ui, request_id) == logs
                assert relay.gap_reads >= 1 and relay.gap_logs >= len(logs)
