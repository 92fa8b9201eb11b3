"""The catalogue watcher keeps the versions live, and goes deaf then back when cut."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import anyio
from sqlalchemy import text

from actors.catalogue import CatalogueWatcher
from persistence import CatalogueVersions
from runtime import ActorState, ChildSpec, open_actor_system
from runtime.testing import wait_for

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def wait_live(versions: CatalogueVersions, live: bool = True) -> None:
    with anyio.fail_after(5):
        while versions.live is not live:  # noqa: ASYNC110 - the versions have no event
            await anyio.sleep(0.005)


async def cut_listener(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN %' AND pid <> pg_backend_pid()"
            )
        )


class TestCatalogueWatcher:
    async def test_live_while_running_and_back_after_a_cut(
        self, database_url: str, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        versions = CatalogueVersions()
        watcher = ChildSpec(
            "catalogue", lambda: CatalogueWatcher(database_url, versions, first_pause=0.05)
        )
        async with open_actor_system(watcher) as system:
            await wait_live(versions)
            user = uuid.uuid4()
            before = versions.current(user)
            await cut_listener(sessionmaker)
            await wait_live(versions, live=False)
            await wait_live(versions)
            # Changes during the cut were never heard: everything moved on.
            assert versions.current(user) != before
            # The cut was handled inside: no restart spent.
            (child,) = system.snapshot().children
            assert child.restarts == 0
        assert not versions.live

    async def test_an_unreachable_database_only_keeps_it_deaf(self) -> None:
        versions = CatalogueVersions()
        url = "postgresql://postgres@127.0.0.1:1/none"
        watcher = ChildSpec("catalogue", lambda: CatalogueWatcher(url, versions, first_pause=0.01))
        async with open_actor_system(watcher) as system:
            instance = system.ref_of("catalogue")._cell.instance
            assert isinstance(instance, CatalogueWatcher)
            # It keeps trying (pauses of 0.01, 0.02, 0.04 s ...) rather than giving up...
            await wait_for(lambda: instance.attempts >= 4, timeout=10)
            assert not versions.live
            assert instance.connects == 0
            # ... inside: the outage spends no restart and fails nothing.
            (child,) = system.snapshot().children
            assert (child.state, child.restarts) == (ActorState.RUNNING, 0)
            assert system.ref_of("catalogue")._cell.instance is instance
            assert not system.failed
