"""The standalone router: the agents' hub alone, as ``genai-backend router`` runs it.

Several back-ends (``serve`` with ``ROUTER_WS_URL``) share one router: the first to
connect receives the agents' events, the others wait as standbys, and each one's
master invocations come back on its own connections. The tree is the embedded
router's part of ``serve``'s:

```
genai-router (one_for_one)
└── router     Supervisor (rest_for_one)
    ├── connections, backend_connections   one ConnectionActor per socket
    └── hub        RouterHub                routing table and listener
```

With a database (``DATABASE_URL`` or ``POSTGRES_*``), agent tokens are checked as
the embedded router checks them (signature and row, `actors.registry.agent_verifier`),
and this process, the router's owner, marks every agent inactive before it listens
and after it stops: no agent is connected to it then, and the back-ends on it never
do. Without one, the router trusts the ``sub`` of agent tokens as upstream's does (the
back-end still refuses a bad token at registration) and resets nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
from typing import TYPE_CHECKING

import anyio

from actors.registry import agent_verifier, mark_agents_inactive
from actors.router import RouterHub, router_children
from persistence import create_engine, create_sessionmaker
from runtime import ChildSpec, Strategy, Supervisor, open_actor_system

from ._server import (
    _ROUTER_INTENSITY,
    EXIT_TREE_FAILED,
    _cancel_on_next_signal,
    _safe_url,
    _wait_for_stop,
    router_config_of,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from actors.router import AgentVerifier
    from persistence import DatabaseSettings
    from runtime import ActorSystem

    from .settings import Settings

__all__ = ["RESET_AGENTS_SECONDS", "RunningRouterServer", "open_router_server", "serve_router"]

logger = logging.getLogger("web.router")

RESET_AGENTS_SECONDS = 30.0
"""Seconds the router waits for the database to reset the agents before it listens
(and after it stops); past them it goes on and leaves the agents as they are."""


@dataclasses.dataclass(frozen=True, slots=True)
class RunningRouterServer:
    """A standalone router serving.

    Attributes:
        system: Its actor system (the router's supervisor under the root).
        url: The agents' and back-ends' ``ROUTER_WS_URL``, ``ws://host:port/ws``.
        database: Where agent tokens are checked, or None when their ``sub`` is trusted.
    """

    system: ActorSystem
    url: str
    database: str | None


@contextlib.asynccontextmanager
async def open_router_server(
    settings: Settings, db_settings: DatabaseSettings
) -> AsyncIterator[RunningRouterServer]:
    """Run the standalone router on ``ROUTER_HOST:ROUTER_PORT`` for the duration of the block.

    Raises:
        OSError: The address cannot be bound.
        Exception: The database refuses the reset of the agents (not an outage: a
            schema that is not migrated, a bad password).
    """
    url = db_settings.url()
    if url is None:
        async with _open_tree(settings, None) as running:
            yield running
        return
    engine = create_engine(url, pool_size=2, max_overflow=2, echo=db_settings.echo)
    try:
        sessionmaker = create_sessionmaker(engine)
        await _reset(sessionmaker, "before listening")
        verify = agent_verifier(settings.JWT_SECRET_KEY, settings.HASH_ALGORITHM, sessionmaker)
        try:
            async with _open_tree(settings, _safe_url(url), verify) as running:
                yield running
        finally:
            # Its sockets are closed: none of the agents is connected any more.
            await _reset(sessionmaker, "after stopping")
    finally:
        await engine.dispose()


async def _reset(sessionmaker: async_sessionmaker[AsyncSession], when: str) -> None:
    count = await mark_agents_inactive(sessionmaker, within=RESET_AGENTS_SECONDS)
    if count is not None:
        logger.info("marked %d agents inactive %s", count, when)


@contextlib.asynccontextmanager
async def _open_tree(
    settings: Settings, database: str | None, verify: AgentVerifier | None = None
) -> AsyncIterator[RunningRouterServer]:
    config = router_config_of(settings, verify_agent=verify)
    # The hub knows the port it bound (ROUTER_PORT=0 picks one); keep each instance.
    hubs: list[RouterHub] = []

    def make_hub() -> RouterHub:
        hubs.append(RouterHub(config))
        return hubs[-1]

    *supervisors, hub = router_children(config)
    specs = [*supervisors, dataclasses.replace(hub, factory=make_hub)]
    async with open_actor_system(name="genai-router") as system:
        await system.start(
            ChildSpec(
                "router",
                lambda: Supervisor(
                    specs, strategy=Strategy.REST_FOR_ONE, intensity=_ROUTER_INTENSITY
                ),
            )
        )
        port = hubs[-1].port
        assert port is not None  # set by the hub's start
        yield RunningRouterServer(system, f"ws://{settings.ROUTER_HOST}:{port}/ws", database)


async def serve_router(settings: Settings, db_settings: DatabaseSettings) -> int:
    """Run the standalone router until SIGINT or SIGTERM, or until its tree fails.

    Signals are handled as ``serve`` handles them: the first stops the router (its
    sockets close with 1001, then the agents are reset); a second one, past the
    duplicate a launcher forwards, cancels what is still stopping.

    Returns:
        The exit code: 0 after a signal, `EXIT_TREE_FAILED` after a failure of the tree.
    """
    failed = False
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            async with open_router_server(settings, db_settings) as router:
                print(f"Agent router (standalone): {router.url}")
                if router.database is None:
                    print("Agent tokens: their sub is trusted (no database configured)")
                else:
                    print(f"Agent tokens: checked against {router.database}")
                print("Ready. Stop with Ctrl-C.", flush=True)
                failed = await _wait_for_stop(signals, router.system)
                tg.start_soon(_cancel_on_next_signal, signals, tg.cancel_scope)
            logger.info("stopped")
            tg.cancel_scope.cancel()
    if failed:
        logger.critical("exiting with code %d: the supervision tree had failed", EXIT_TREE_FAILED)
        return EXIT_TREE_FAILED
    return 0
