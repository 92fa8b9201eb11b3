"""The composition root: database, supervision tree and faces of one server process."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio

from actors.router import ApiKeys, RouterConfig, router_children
from persistence import (
    DatabaseSettings,
    create_engine,
    create_sessionmaker,
    head_revision,
    is_up_to_date,
    open_embedded_postgres,
    upgrade_to_head,
)
from runtime import ActorSystem, ChildSpec, Strategy, Supervisor, open_actor_system

from ._http import GetAddresses, HttpServer, hypercorn_config
from .app import create_app
from .services import AppServices

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "DatabaseBehindError",
    "InsecureSettingsError",
    "RunningServer",
    "open_database",
    "open_server",
    "serve",
]

logger = logging.getLogger("web.server")


class DatabaseBehindError(Exception):
    """Raised at start-up when an external database's schema is older than the code."""


class InsecureSettingsError(Exception):
    """Raised at start-up outside development mode while a secret is a default or empty."""


def check_settings(settings: Settings) -> None:
    """Refuse settings that must not reach production.

    Raises:
        InsecureSettingsError: Outside development mode, the JWT signing key or the
            API-key encryption keys are defaults or empty.
    """
    weak = settings.insecure_secrets()
    if weak and not settings.is_development:
        raise InsecureSettingsError(
            f"ENVIRONMENT={settings.ENVIRONMENT} needs its own {' and '.join(weak)} "
            "(they are defaults or empty); set them in the environment or .env"
        )


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """Where the database is: its URL and whether we run it ourselves."""

    url: str
    embedded: bool
    description: str


@contextlib.asynccontextmanager
async def open_database(
    db_settings: DatabaseSettings, *, migrate: bool = False
) -> AsyncIterator[DatabaseInfo]:
    """Make the database ready for the server, for the duration of the block.

    Embedded mode starts PostgreSQL from the data directory and migrates it to
    head. An external database is migrated only when `migrate` is true;
    otherwise a schema behind the code is refused.

    Raises:
        DatabaseBehindError: The external schema is behind and `migrate` is false.
    """
    url = db_settings.url()
    if url is None:
        data_dir = db_settings.resolved_pgdata_dir()
        async with open_embedded_postgres(data_dir) as server:
            await upgrade_to_head(server.url())
            yield DatabaseInfo(server.url(), True, f"embedded PostgreSQL in {data_dir}")
        return
    if migrate:
        await upgrade_to_head(url)
    elif not await is_up_to_date(url):
        raise DatabaseBehindError(
            "the database schema is behind this version (head is "
            f"{head_revision()}): run 'genai-backend migrate' or 'serve --migrate'"
        )
    yield DatabaseInfo(url, False, f"external PostgreSQL at {_safe_url(url)}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A running server: its actor system and where each face listens."""

    system: ActorSystem
    http_addresses: list[tuple[str, int]]
    router_url: str
    database: DatabaseInfo
    draining: anyio.Event
    """Set when a stop begins: readiness turns 503 and new front-end sockets are refused."""


@contextlib.asynccontextmanager
async def open_server(
    settings: Settings, db_settings: DatabaseSettings, *, migrate: bool = False
) -> AsyncIterator[RunningServer]:
    """Run the whole server for the duration of the block.

    The tree starts in order (router, then the HTTP face last) and is ready when
    the block is entered; on exit it stops in reverse order, then the database.

    Raises:
        InsecureSettingsError: See `check_settings`.
        DatabaseBehindError: See `open_database`.
    """
    check_settings(settings)
    async with open_database(db_settings, migrate=migrate) as database:
        engine = create_engine(
            database.url,
            pool_size=db_settings.pool_size,
            max_overflow=db_settings.max_overflow,
            echo=db_settings.echo,
        )
        try:
            sessionmaker = create_sessionmaker(engine)
            services = AppServices(settings, sessionmaker)
            draining = anyio.Event()
            services.extras["draining"] = draining
            app = create_app(settings, sessionmaker, services=services)
            embedded_router = settings.ROUTER_WS_URL is None
            router_config = RouterConfig(
                host=settings.ROUTER_HOST,
                port=settings.ROUTER_PORT,
                keys=ApiKeys(
                    master_be=settings.MASTER_BE_API_KEY,
                    master_agent=settings.MASTER_AGENT_API_KEY,
                ),
            )
            router_specs = router_children(router_config) if embedded_router else []
            children = [
                ChildSpec(
                    "router",
                    lambda: Supervisor(router_specs, strategy=Strategy.REST_FOR_ONE),
                ),
                ChildSpec(
                    "http",
                    lambda: HttpServer(
                        app,
                        hypercorn_config(
                            settings.HTTP_HOST,
                            settings.HTTP_PORT,
                            graceful_timeout=settings.SHUTDOWN_GRACE_SECONDS,
                        ),
                    ),
                    shutdown=settings.SHUTDOWN_GRACE_SECONDS + 2,
                ),
            ]
            async with open_actor_system(*children, name="genai-backend") as system:
                services.extras["system"] = system
                services.metrics.watch_system(system)
                addresses = await system.ref_of("http").ask(GetAddresses())
                if embedded_router:
                    router_url = f"ws://{settings.ROUTER_HOST}:{settings.ROUTER_PORT}/ws"
                else:
                    router_url = str(settings.ROUTER_WS_URL)
                yield RunningServer(system, addresses, router_url, database, draining)
        finally:
            await engine.dispose()


async def serve(settings: Settings, db_settings: DatabaseSettings, *, migrate: bool) -> None:
    """Run the server until SIGINT or SIGTERM, then stop it in order.

    The first signal starts a graceful stop (the tree in reverse order, then the
    database); a second one cancels whatever is still stopping.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            async with open_server(settings, db_settings, migrate=migrate) as server:
                for host, port in server.http_addresses:
                    print(f"HTTP API, front-end WebSocket and docs: http://{host}:{port}/docs")
                kind = "embedded" if settings.ROUTER_WS_URL is None else "external"
                print(f"Agent router ({kind}): {server.router_url}")
                print(f"Database: {server.database.description}")
                print("Ready. Stop with Ctrl-C.", flush=True)
                async for signum in signals:
                    logger.warning("%s received: stopping", signal.Signals(signum).name)
                    break
                server.draining.set()
                tg.start_soon(_cancel_on_next_signal, signals, tg.cancel_scope)
            tg.cancel_scope.cancel()


async def _cancel_on_next_signal(signals: AsyncIterator[int], scope: anyio.CancelScope) -> None:
    async for signum in signals:
        logger.warning("%s received again: stopping at once", signal.Signals(signum).name)
        scope.cancel()
        return
