"""The composition root: database, supervision tree and faces of one server process."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio

from actors import (
    ChatDeps,
    ChatsClient,
    LocalConnector,
    LogFanoutClient,
    RegistryClient,
    RegistryConfig,
    RouterSessionClient,
    SessionConfig,
    catalogue_watcher_spec,
    chat_supervisor_spec,
    log_fanout_spec,
    registry_spec,
    router_session_spec,
)
from actors.chat import (
    INTERRUPTED,
    ChatDrain,
    TurnDirectory,
    stored_error,
    turn_relay_spec,
)
from actors.cluster import HeartbeatClient, heartbeat_spec, process_identity
from actors.fanout import Subscriptions, log_relay_spec
from actors.janitor import janitor_spec
from actors.master import CancelMasterTurn, LoopSettings, MasterConfig, master_agent_spec
from actors.registry import agent_verifier
from actors.router import (
    ApiKeys,
    GetStatistics,
    LogLimits,
    RouterConfig,
    router_children,
)
from actors.session import WebSocketConnector
from actors.tools import ToolRefresherClient, tool_refresher_spec
from persistence import (
    DatabaseSettings,
    bound_engine,
    create_engine,
    create_sessionmaker,
    head_revision,
    is_up_to_date,
    open_embedded_postgres,
    upgrade_to_head,
)
from runtime import (
    ActorDeadError,
    ActorSystem,
    ChildSpec,
    MailboxFullError,
    RestartIntensity,
    Strategy,
    Supervisor,
    open_actor_system,
)

from ._http import GetAddresses, HttpServer, hypercorn_config
from .app import create_app
from .blueprints.integrations import outbound_policy
from .blueprints.llm import DEFAULT_SYSTEM_PROMPT
from .services import AppServices

if TYPE_CHECKING:
    from quart import Quart

    from actors.router import AgentStepObserver, AgentVerifier
    from actors.session import MasterReplied
    from runtime import ActorRef

    from .metrics import Metrics
    from .settings import Settings

__all__ = [
    "EXIT_TREE_FAILED",
    "DatabaseBehindError",
    "InsecureSettingsError",
    "PortTakenError",
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
            f"ENVIRONMENT={settings.ENVIRONMENT} needs its own {_and(weak)} "
            "(they are defaults or empty); set them in the environment or .env"
        )


class PortTakenError(OSError):
    """Raised at start-up when a port the server must listen on is taken."""


def check_ports(settings: Settings) -> None:
    """Refuse to start, before anything shared is touched, when a port is taken.

    A second server on the same data would otherwise start its tree first (and, with
    it, the registry's start-up, which marks every agent inactive) and only then fail
    to listen. Binding is tried and released at once; the listeners bind again later.

    Raises:
        PortTakenError: ``HTTP_PORT`` or (with the embedded router) ``ROUTER_PORT`` is
            taken; the message names the setting to change.
    """
    ports = [("HTTP_PORT", settings.HTTP_HOST, settings.HTTP_PORT)]
    if settings.ROUTER_WS_URL is None:
        ports.append(("ROUTER_PORT", settings.ROUTER_HOST, settings.ROUTER_PORT))
    for name, host, port in ports:
        if port == 0:
            continue  # any free port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As the listeners themselves bind: a socket in TIME_WAIT is no obstacle.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise PortTakenError(
                    f"cannot listen on {host}:{port} ({exc.strerror}): another server may "
                    f"be running there; set {name} to a free port",
                ) from exc


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


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
    chat_drain: ChatDrain
    """The chats' side of a stop: new sockets refused, turns given a deadline."""

    async def drain(self, grace: float) -> None:
        """Begin the stop: readiness 503 at once, new front-end sockets refused; wait
        for the chat turns in flight (cut short after ``grace`` seconds with an error
        frame), then close the front-end sockets. The tree keeps running."""
        await self.chat_drain.drain(grace)


@contextlib.asynccontextmanager
async def open_server(
    settings: Settings, db_settings: DatabaseSettings, *, migrate: bool = False
) -> AsyncIterator[RunningServer]:
    """Run the whole server for the duration of the block.

    The tree starts in order (fan-out, registry, router, chats, then the HTTP face)
    and is ready when the block is entered; on exit it stops in reverse order, then
    the database.

    Raises:
        InsecureSettingsError: See `check_settings`.
        PortTakenError: See `check_ports`.
        DatabaseBehindError: See `open_database`.
    """
    check_settings(settings)
    check_ports(settings)
    async with open_database(db_settings, migrate=migrate) as database:
        engine = create_engine(
            database.url,
            pool_size=db_settings.pool_size,
            max_overflow=db_settings.max_overflow,
            echo=db_settings.echo,
        )
        try:
            sessionmaker = create_sessionmaker(engine)
            chat_drain = ChatDrain()
            services = AppServices(settings, sessionmaker, drain=chat_drain)
            app = create_app(settings, sessionmaker, services=services)
            async with open_actor_system(name="genai-backend") as system:
                # Started one by one, in dependency order; the tree stops in reverse.
                router_url = await _start_tree(
                    system, settings, sessionmaker, services, app, chat_drain
                )
                addresses = await system.ref_of("http").ask(GetAddresses())
                yield RunningServer(system, addresses, router_url, database, chat_drain)
        finally:
            await engine.dispose()


# For crashes (bugs) of the router's children, whose restarts back off (the session's up
# to 5 s each, so that chat turns come back within seconds of a crash). A router that
# is down spends none of it: the session waits for it inside.
_ROUTER_INTENSITY = RestartIntensity(max_restarts=20, period=300.0)


async def _start_tree(
    system: ActorSystem,
    settings: Settings,
    sessionmaker: Any,
    services: AppServices,
    app: Quart,
    chat_drain: ChatDrain,
) -> str:
    """Start the children of the root in order and plug their clients into `services`.

    Returns:
        The URL of the router the session connects to.
    """
    embedded_router = settings.ROUTER_WS_URL is None
    router_url = (
        f"ws://127.0.0.1:{settings.ROUTER_PORT}/ws"
        if embedded_router
        else str(settings.ROUTER_WS_URL)
    )
    directory = TurnDirectory()
    # This process's row comes before anything else: its first beat also answers, as
    # interrupted, the open turns of processes that are gone or have no live row.
    identity = process_identity(
        services.process_id,
        http_url=f"http://{settings.HTTP_HOST}:{settings.HTTP_PORT}",
        owns_router=embedded_router,
    )
    await system.start(
        heartbeat_spec(
            sessionmaker,
            identity,
            reply_for=stored_error(INTERRUPTED),
            interval=settings.HEARTBEAT_SECONDS,
            timeout=settings.PEER_TIMEOUT_SECONDS,
        )
    )
    cluster = services.cluster = HeartbeatClient(system.ref_of("heartbeat"))
    services.metrics.set_process(
        str(identity.id),
        hostname=identity.hostname or "",
        pid=identity.pid or 0,
        owns_router=identity.owns_router,
    )
    services.metrics.add_probe(
        "cluster",
        lambda: _cluster_stats(cluster),
        "This process among its peers: peers seen, beats, peers taken for dead and their "
        "turns interrupted, waits for the database",
    )
    fanout = LogFanoutClient(system)
    # Shared by the fan-out and the relay that brings it the logs other processes store.
    subscriptions = Subscriptions()
    await system.start(log_fanout_spec(observe=directory.report_log, subscriptions=subscriptions))
    await system.start(catalogue_watcher_spec(bound_engine(sessionmaker).url, services.catalogue))
    await system.start(
        log_relay_spec(
            bound_engine(sessionmaker).url, sessionmaker, services.process_id, subscriptions
        )
    )
    await system.start(
        registry_spec(
            RegistryConfig(
                settings.JWT_SECRET_KEY,
                settings.HASH_ALGORITHM,
                owns_router=embedded_router,
                process_id=services.process_id,
            ),
            sessionmaker,
            sink=fanout,
        )
    )
    router_specs: list[ChildSpec] = []
    if embedded_router:
        router_config = router_config_of(
            settings,
            verify_agent=agent_verifier(
                settings.JWT_SECRET_KEY, settings.HASH_ALGORITHM, sessionmaker
            ),
            observe=directory.report_step,
        )
        keys = router_config.keys
        assert keys is not None
        router_specs += router_children(router_config)
    connector = None
    if embedded_router:
        # The session reaches the router in our own process through its hub, not a socket.
        connector = LocalConnector(
            lambda: system.ref_of("router.hub"),
            keys,
            url=router_url,
            capacity=router_config.outbox_capacity,
            backend_capacity=router_config.backend_outbox_capacity,
        )
    router_specs.append(
        router_session_spec(
            SessionConfig(router_url, settings.MASTER_BE_API_KEY), connector=connector
        )
    )
    if settings.builtin_master:
        # Our own master agent: a router client as master_server_ml, in-process on the
        # embedded router as the session is, so the chat path is the external master's.
        loop = LoopSettings(
            DEFAULT_SYSTEM_PROMPT,
            model_timeout=settings.MASTER_MODEL_TIMEOUT,
            agent_timeout=settings.MASTER_TOOL_TIMEOUT,
            max_steps=settings.MASTER_MAX_STEPS,
        )
        router_specs.append(
            master_agent_spec(
                MasterConfig(
                    settings.MASTER_AGENT_API_KEY, loop, turn_timeout=settings.MASTER_AGENT_TIMEOUT
                ),
                sessionmaker=sessionmaker,
                connector=connector or WebSocketConnector(router_url),
                catalogue=services.catalogue,
                outbound=outbound_policy(settings),
            )
        )
    await system.start(
        ChildSpec(
            "router",
            lambda: Supervisor(
                router_specs, strategy=Strategy.REST_FOR_ONE, intensity=_ROUTER_INTENSITY
            ),
        )
    )
    session = RouterSessionClient(system.ref_of("router.session"))
    master = _MeasuredMaster(session, services.metrics)
    deps = ChatDeps(
        sessionmaker,
        master,
        cipher=services.api_key_cipher(),
        master_timeout=settings.MASTER_AGENT_TIMEOUT,
        files_dir=settings.FILES_DIR,
        drain=chat_drain,
        observe=master.observe,
        directory=directory,
        master_kind="builtin" if settings.builtin_master else "external",
        cancel_master_turn=_master_canceller(system) if settings.builtin_master else None,
        process_id=services.process_id,
    )
    await system.start(chat_supervisor_spec(deps))
    chats = ChatsClient(system, fanout=fanout)
    await system.start(
        turn_relay_spec(
            bound_engine(sessionmaker).url,
            sessionmaker,
            services.process_id,
            deps.rooms,
            cancel=chats.cancel_turn,
            directory=directory,
        )
    )
    await system.start(
        janitor_spec(
            sessionmaker,
            retention=timedelta(hours=settings.TURN_RETENTION_HOURS),
            interval=settings.TURN_JANITOR_INTERVAL_SECONDS,
        )
    )
    await system.start(
        tool_refresher_spec(
            sessionmaker,
            outbound_policy(settings),
            interval=settings.MCP_A2A_REFRESH_SECONDS,
            concurrency=settings.MCP_A2A_PROBE_CONCURRENCY,
        )
    )
    refresher = ToolRefresherClient(system.ref_of("tools"))
    services.metrics.add_probe(
        "tool_probes", lambda: _refresher_stats(refresher), "MCP and A2A probes by outcome"
    )
    services.chats = chats
    services.router = session
    services.system = system
    services.router_status = lambda: _router_status(session)
    services.metrics.watch_system(system)
    registry = RegistryClient(system.ref_of("registry"))
    services.metrics.add_probe(
        "log_rows", lambda: _registry_stats(registry), "Agent log rows by state"
    )
    services.registry_status = lambda: _registry_events(registry)
    services.metrics.add_probe(
        "registry",
        lambda: _registry_events(registry),
        "Agent events by state, and seconds the registry has waited for the database",
    )
    if embedded_router:
        hub = system.ref_of("router.hub")
        services.metrics.add_probe(
            "router", lambda: _hub_stats(hub), "Embedded router connections and agents"
        )
    await system.start(
        ChildSpec(
            "http",
            lambda: HttpServer(
                app,
                hypercorn_config(
                    settings.HTTP_HOST,
                    settings.HTTP_PORT,
                    graceful_timeout=settings.SHUTDOWN_GRACE_SECONDS,
                    max_ws_frame_bytes=settings.MAX_WS_FRAME_BYTES,
                ),
            ),
            shutdown=settings.SHUTDOWN_GRACE_SECONDS + 2,
        )
    )
    return router_url


def _master_canceller(system: ActorSystem) -> Callable[[str], None]:
    """Tell the built-in master to stop a turn (dropped if it is down or full: its own
    deadline then ends the turn)."""

    def cancel(request_id: str) -> None:
        with contextlib.suppress(ActorDeadError, MailboxFullError, KeyError):
            system.ref_of("router.master").tell_nowait(CancelMasterTurn(request_id))

    return cancel


def router_config_of(
    settings: Settings,
    *,
    verify_agent: AgentVerifier | None,
    observe: AgentStepObserver | None = None,
) -> RouterConfig:
    """The router's listener, keys and log budgets from the settings (the embedded
    router's and the standalone one's alike)."""
    return RouterConfig(
        host=settings.ROUTER_HOST,
        port=settings.ROUTER_PORT,
        keys=ApiKeys(
            master_be=settings.MASTER_BE_API_KEY, master_agent=settings.MASTER_AGENT_API_KEY
        ),
        verify_agent=verify_agent,
        log_limits=LogLimits(
            rate=settings.ROUTER_LOG_RATE,
            burst=settings.ROUTER_LOG_BURST,
            bytes_rate=settings.ROUTER_LOG_BYTES_RATE,
            bytes_burst=settings.ROUTER_LOG_BYTES_BURST,
        ),
        observe=observe,
    )


async def _router_status(session: RouterSessionClient) -> dict[str, Any]:
    status = await session.status()
    return {
        "connected": status.connected,
        "url": status.url,
        "in_flight": status.in_flight,
        "connects": status.connects,
        # While the router is down: why the last attempt failed (the session retries).
        "last_error": status.last_error,
    }


async def _registry_stats(registry: RegistryClient) -> dict[str, float]:
    stats = await registry.statistics()
    return {
        "written": stats.written,
        "buffered": stats.buffered,
        "dropped": stats.dropped,
        "overflowed": stats.overflowed,
        "failed": stats.failed,
        "retries": stats.retries,
    }


async def _registry_events(registry: RegistryClient) -> dict[str, float]:
    stats = await registry.statistics()
    since = stats.waiting_since
    return {
        "pending": stats.pending_events,
        "registered": stats.registered,
        "rejected": stats.rejected,
        "unregistered": stats.unregistered,
        "overflowed": stats.events_overflowed,
        "failed": stats.events_failed,
        "waiting_seconds": 0.0 if since is None else max(0.0, time.time() - since),
    }


async def _cluster_stats(cluster: HeartbeatClient) -> dict[str, float]:
    status = await cluster.status()
    return {
        "peers": len(status.peers),
        "beats": status.beats,
        "peers_forgotten": status.peers_forgotten,
        "turns_interrupted": status.turns_interrupted,
        "database_waits": status.database_waits,
        "waiting_for_database": float(status.waiting_for_database),
    }


async def _refresher_stats(refresher: ToolRefresherClient) -> dict[str, float]:
    stats = await refresher.statistics()
    return {
        **stats.outcomes,
        "rounds": stats.rounds,
        "last_round_seconds": stats.last_round_seconds,
        "urls": stats.urls,
        "database_waits": stats.database_waits,
    }


async def _hub_stats(hub: Any) -> dict[str, float]:
    stats = await hub.ask(GetStatistics())
    return {
        "connections": stats.connections,
        "agents_connected": stats.registered_agents,
        "pending_invocations": stats.pending_invocations,
        "refused_frames": stats.refused_frames,
        "refused_connections": stats.refused_connections,
        "refused_invocations": stats.refused_invocations,
        "stray_replies": stats.stray_replies,
        "logs_forwarded": stats.logs_forwarded,
        "logs_unauthenticated": stats.logs_unauthenticated,
        "logs_over_budget": stats.logs_over_budget,
        "standby_backends": stats.standby_backends,
        "swept_connections": stats.swept_connections,
    }


class _MeasuredMaster:
    """The router session's master invoker for the chat actors, with the turn metrics
    (counts, latency and errors by kind) the chat actors report through `observe`."""

    def __init__(self, session: RouterSessionClient, metrics: Metrics) -> None:
        self._session = session
        self._metrics = metrics

    @property
    def ref(self) -> ActorRef[Any]:
        return self._session.ref

    async def invoke_master(
        self,
        payload: Mapping[str, Any],
        *,
        request_id: str,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the call's contract
        reply_to: ActorRef[MasterReplied],
    ) -> None:
        await self._session.invoke_master(
            payload,
            request_id=request_id,
            session_id=session_id,
            timeout=timeout,
            reply_to=reply_to,
        )

    def cancel_master(self, request_id: str) -> None:
        self._session.cancel_master(request_id)

    def observe(self, kind: str, seconds: float) -> None:
        if kind != "ok":
            self._metrics.master_errors.labels(kind).inc()
        self._metrics.observe_turn(kind, seconds)


EXIT_TREE_FAILED = 70
"""``serve``'s exit code once the tree is past its restart intensity (``EX_SOFTWARE``)."""


async def serve(settings: Settings, db_settings: DatabaseSettings, *, migrate: bool) -> int:
    """Run the server until SIGINT or SIGTERM, or until its tree fails; then stop it in order.

    The first signal starts a graceful stop: readiness turns 503 and new front-end
    sockets are refused at once; chat turns in flight get ``SHUTDOWN_GRACE_SECONDS``
    to finish (then answer with an error frame); the front-end sockets close; the tree
    stops in reverse order (the HTTP face first, the registry flushing its log buffer
    late); then the database. A second signal cancels whatever is still stopping.

    A tree past its root's restart intensity no longer heals itself: as an OTP node
    does, the process then stops the same graceful way and exits non-zero, so that its
    process manager starts a fresh one (``/health/live`` answers 503 meanwhile).

    Returns:
        The exit code: 0 after a signal, `EXIT_TREE_FAILED` after a failure of the tree.
    """
    failed = False
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            async with open_server(settings, db_settings, migrate=migrate) as server:
                for host, port in server.http_addresses:
                    print(f"HTTP API, front-end WebSocket and docs: http://{host}:{port}/docs")
                kind = "embedded" if settings.ROUTER_WS_URL is None else "external"
                print(f"Agent router ({kind}): {server.router_url}")
                print(f"Database: {server.database.description}")
                print("Ready. Stop with Ctrl-C.", flush=True)
                _settle_heap()
                failed = await _wait_for_stop(signals, server.system)
                tg.start_soon(_cancel_on_next_signal, signals, tg.cancel_scope)
                started = time.monotonic()
                await server.drain(settings.SHUTDOWN_GRACE_SECONDS)
                logger.info(
                    "chat turns drained in %.2f s; stopping the tree", time.monotonic() - started
                )
            logger.info("stopped")
            tg.cancel_scope.cancel()
    if failed:
        logger.critical("exiting with code %d: the supervision tree had failed", EXIT_TREE_FAILED)
        return EXIT_TREE_FAILED
    return 0


async def _wait_for_stop(signals: AsyncIterator[int], system: ActorSystem) -> bool:
    """Wait for a stop signal or for the tree to fail; return whether it failed."""
    failed = False
    async with anyio.create_task_group() as tg:

        async def on_failure() -> None:
            nonlocal failed
            await system.wait_failed()
            failed = True
            logger.critical(
                "the supervision tree is past its restart intensity and cannot heal itself: "
                "stopping, so that the process manager starts a fresh process"
            )
            tg.cancel_scope.cancel()

        tg.start_soon(on_failure)
        async for signum in signals:
            logger.warning("%s received: stopping", signal.Signals(signum).name)
            break
        tg.cancel_scope.cancel()
    return failed


def _settle_heap() -> None:
    """Keep what startup built out of the cyclic garbage collector's full passes.

    Models, schemas, the app and the tree live as long as the process; left in the
    collector's oldest generation, every full pass walks them all and stalls the event
    loop, every request and turn with it, for about 0.1 s. Frozen, a full pass takes a
    few milliseconds.
    """
    gc.collect()
    gc.freeze()
    logger.info(
        "startup heap frozen: %d objects left out of full collections", gc.get_freeze_count()
    )


# After a second signal, what is cancelled may still wait on a peer (a WebSocket close
# handshake, a database connection); past this many seconds the process just exits.
FORCED_EXIT_SECONDS = 2.0


# A stop sent to the whole process group (a process manager, a terminal's Ctrl-C) reaches
# this process twice when it runs under a launcher that forwards signals (`uv run`): a
# second signal this soon after the first is that same stop, not an impatient operator.
DUPLICATE_SIGNAL_SECONDS = 1.0


async def _cancel_on_next_signal(signals: AsyncIterator[int], scope: anyio.CancelScope) -> None:
    first = time.monotonic()
    async for signum in signals:
        if time.monotonic() - first < DUPLICATE_SIGNAL_SECONDS:
            logger.info("%s received again at once: the same stop", signal.Signals(signum).name)
            continue
        logger.warning("%s received again: stopping at once", signal.Signals(signum).name)
        watchdog = threading.Timer(FORCED_EXIT_SECONDS, _exit_now)
        watchdog.daemon = True
        watchdog.start()
        scope.cancel()
        return


def _exit_now() -> None:
    logger.error("still stopping %.0f s after the second signal: exiting", FORCED_EXIT_SECONDS)
    logging.shutdown()
    os._exit(1)
