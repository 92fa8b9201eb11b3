"""The refresher: one probe per distinct URL, hanging servers bounded, outages waited out."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from actors.tools import OutboundPolicy, ToolRefresher, ToolRefresherClient
from persistence import MCPRepository, MCPServer, NewTool, User
from runtime import ActorState, ChildSpec, open_actor_system
from runtime.testing import wait_for
from tests.actors.tools.servers import ThreadServer, mcp_app, plain_app

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

POLICY = OutboundPolicy(deadline=1.0, connect_timeout=1.0, read_timeout=1.0)


async def _user(session: AsyncSession) -> uuid.UUID:
    user = User(id=uuid.uuid4(), username=f"u{uuid.uuid4().hex[:8]}", password="x")
    session.add(user)
    await session.flush()
    return user.id


def _refresher(sessionmaker: Any, **kw: Any) -> ChildSpec:
    return ChildSpec("tools", lambda: ToolRefresher(sessionmaker, POLICY, interval=3600, **kw))


class TestRounds:
    async def test_each_url_once_and_a_hanging_server_delays_nothing(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async def hang(request: Any) -> Any:
            await anyio.sleep(60)

        good = ThreadServer(mcp_app).start()
        hanging = ThreadServer(lambda: plain_app({"/mcp": hang})).start()
        try:
            urls = [f"{good.url}/mcp", f"{hanging.url}/mcp"]
            async with sessionmaker.begin() as session:
                repository = MCPRepository(session)
                for _ in range(3):  # three users, the same two URLs
                    owner = await _user(session)
                    for url in urls:
                        await repository.add(
                            url, [NewTool("add", "add_abcdef", "old", {}, None)], owner_id=owner
                        )
            async with open_actor_system(_refresher(sessionmaker, concurrency=2)) as system:
                refresher = ToolRefresherClient(system.ref_of("tools"))
                started = time.monotonic()
                with anyio.fail_after(20):
                    await refresher.refresh()
                # One deadline for the hanging probe, whichever round the request joined.
                assert time.monotonic() - started < 2 * POLICY.deadline + 5
                stats = await refresher.statistics()
                assert stats.urls == 2
                # Probed once per round each, not once per user.
                assert stats.outcomes["mcp_ok"] == stats.outcomes["mcp_unreachable"] == stats.rounds
                # The actor answered meanwhile: statistics never waited for the round.
            async with sessionmaker() as session:
                servers = (await session.scalars(select(MCPServer))).all()
                active = {(s.server_url, s.is_active) for s in servers}
                assert active == {(urls[0], True), (urls[1], False)}
                tools = await MCPRepository(session).tools([s.id for s in servers])
                good_tools = [t for s in servers if s.server_url == urls[0] for t in tools[s.id]]
                # Updated by name, the new one added, for each user's server.
                assert sorted(t.name for t in good_tools) == ["add"] * 3 + ["echo"] * 3
                assert {t.description for t in good_tools if t.name == "add"} == {
                    "Add two numbers."
                }
                assert {t.alias for t in good_tools if t.name == "add"} == {"add_abcdef"}
        finally:
            good.stop()
            hanging.stop()

    async def test_answers_while_a_round_hangs(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async def hang(request: Any) -> Any:
            await anyio.sleep(60)

        hanging = ThreadServer(lambda: plain_app({"/mcp": hang})).start()
        try:
            async with sessionmaker.begin() as session:
                await MCPRepository(session).add(
                    f"{hanging.url}/mcp", [], owner_id=await _user(session)
                )
            async with open_actor_system(_refresher(sessionmaker)) as system:
                refresher = ToolRefresherClient(system.ref_of("tools"))
                await wait_for(lambda: system.ref_of("tools")._cell.instance.statistics().running)
                with anyio.fail_after(0.5):
                    assert (await refresher.statistics()).running
        finally:
            hanging.stop()


class TestDatabaseOutage:
    async def test_waits_it_out_without_a_restart(self) -> None:
        engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
        sessionmaker = async_sessionmaker(engine)
        try:
            spec = ChildSpec(
                "tools",
                lambda: ToolRefresher(sessionmaker, POLICY, interval=3600, first_pause=0.01),
            )
            async with open_actor_system(spec) as system:
                refresher = ToolRefresherClient(system.ref_of("tools"))
                await wait_for(
                    lambda: system.ref_of("tools")._cell.instance.statistics().database_waits >= 3,
                    timeout=10,
                )
                stats = await refresher.statistics()
                assert stats.waiting_for_database and stats.rounds == 0
                (child,) = system.snapshot().children
                assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
                assert not system.failed
        finally:
            await engine.dispose()
