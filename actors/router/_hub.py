"""The router hub actor: it owns the routing table and the listening socket.

Each accepted socket gets a :class:`~._connection.ConnectionActor` (its bounded outbox
and sender) from a sibling ``DynamicSupervisor``; the socket's reader tells the hub what
arrives. The hub handles one message at a time, so the table needs no lock, and it never
waits on a socket: frames go to the connections' outboxes without waiting.

Place it with :func:`router_children`::

    Supervisor([*router_children(port=8080), ChildSpec("session", ...)],
               strategy=Strategy.REST_FOR_ONE)
"""

from __future__ import annotations

import dataclasses
import functools
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import anyio
from websockets.asyncio.server import serve

from runtime import (
    Actor,
    ChildSpec,
    DynamicSupervisor,
    OverflowPolicy,
    Restart,
)

from ._connection import (
    DEFAULT_BACKEND_OUTBOX_CAPACITY,
    DEFAULT_OUTBOX_CAPACITY,
    serve_connection,
)
from ._switchboard import Switchboard
from ._table import DEFAULT_MAX_FRAME_BYTES, AgentStepObserver, RoutingTable
from ._verify import TokenChecks

if TYPE_CHECKING:
    from websockets.asyncio.server import Server, ServerConnection
    from websockets.http11 import Request, Response

    from ._budget import LogLimits
    from ._envelope import Frame
    from ._identity import AgentVerifier, ApiKeys, Identity
    from ._switchboard import Outbox
    from ._table import TableStatistics

__all__ = [
    "CORRELATION_FEATURE",
    "DEFAULT_PORT",
    "FEATURES_HEADER",
    "TRANSPORT_LIMIT_FACTOR",
    "WS_PATH",
    "AbandonConnection",
    "CloseConnection",
    "GetStatistics",
    "HubMessage",
    "OpenConnection",
    "ReceiveFrame",
    "RouterConfig",
    "RouterHub",
    "Sweep",
    "router_children",
]

DEFAULT_PORT = 8080
WS_PATH = "/ws"
TRANSPORT_LIMIT_FACTOR = 4
"""Frames up to this many times the frame limit are read and refused with an error
frame; larger ones make the transport close the socket with code 1009."""

FEATURES_HEADER = "X-GenAI-Router"
"""The handshake response header in which our router names the extensions it serves
(comma-separated); the original router sends none, and clients ignore it."""

CORRELATION_FEATURE = "correlation"
"""A back-end connection may carry many invocations at once, told apart by their
``correlation_id`` (see `RoutingTable`)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RouterConfig:
    """Where the router listens and its limits.

    Attributes:
        host: The interface to listen on.
        port: The port; 0 picks a free one (``RouterHub.port`` tells which).
        keys: The back-end and master-agent API keys (upstream defaults if ``None``).
        max_frame_bytes: Larger frames are refused with an error frame.
        outbox_capacity: Frames queued per connection before it is closed (1013).
        backend_outbox_capacity: The same for the back-end's own connection
            (``master_server_be``), which carries every agent's logs: a burst must
            not close it and lose them, so it may queue far more.
        replay_registrations: Replay connected agents' registrations to a back-end
            that (re)connects.
        ping_interval: Seconds between WebSocket pings; ``None`` turns them off.
        verify_agent: Checks agent tokens (many at once: those of the sockets that
            connect while a check runs share the next) before their sockets are routable, and makes
            the table authenticate (``RoutingTable(authenticate=True)``). ``None``
            trusts the token's ``sub`` as upstream does (a router with no access to
            the back-end's secret and database; the back-end still refuses the
            agent at registration).
        log_limits: Every verified agent's log budget.
        hub_capacity: Messages the hub's mailbox holds (frames wait for room; a storm
            of opens and closes must not be refused).
        listen_backlog: Connections the kernel queues before the router accepts them
            (capped by ``net.core.somaxconn``).
        sweep_interval: Seconds between two sweeps of closed sockets whose close did
            not reach the hub (see `Switchboard.sweep`).
        observe: Told what agents do for a turn (see `AgentStepObserver`).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    keys: ApiKeys | None = None
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    outbox_capacity: int = DEFAULT_OUTBOX_CAPACITY
    backend_outbox_capacity: int = DEFAULT_BACKEND_OUTBOX_CAPACITY
    replay_registrations: bool = True
    ping_interval: float | None = 20
    verify_agent: AgentVerifier | None = None
    log_limits: LogLimits | None = None
    hub_capacity: int = 10_000
    listen_backlog: int = 4096
    sweep_interval: float = 1.0
    observe: AgentStepObserver | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class OpenConnection:
    """Add a connection (ask: answers its connection id, or ``None`` if refused)."""

    identity: Identity
    outbox: Outbox


@dataclasses.dataclass(frozen=True, slots=True)
class ReceiveFrame:
    """Route one frame received on ``conn_id``: a socket's text, or the frame object of
    a connection in our own process (which hands it over)."""

    conn_id: str
    data: str | bytes | Frame


@dataclasses.dataclass(frozen=True, slots=True)
class CloseConnection:
    """Remove the connection ``conn_id``, whose socket has closed."""

    conn_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class AbandonConnection:
    """Remove the connection of ``outbox`` if it was opened: its socket gave up waiting
    for the `OpenConnection` answer, which the hub may still handle after it."""

    outbox: Outbox


@dataclasses.dataclass(frozen=True, slots=True)
class GetStatistics:
    """Ask for a :class:`TableStatistics` snapshot."""


@dataclasses.dataclass(frozen=True, slots=True)
class Sweep:
    """Remove the connections of sockets released two sweeps ago (`Switchboard.sweep`)."""


HubMessage = (
    OpenConnection | ReceiveFrame | CloseConnection | AbandonConnection | GetStatistics | Sweep
)


class RouterHub(Actor[HubMessage]):
    """Serve ``ws://host:port/ws`` and route every frame (spec PROTOCOL.md §1).

    Args:
        config: Address and limits.
        connections: Registry path of the ``DynamicSupervisor`` that runs the
            connection actors; by default the sibling named ``connections``.
    """

    def __init__(
        self,
        config: RouterConfig | None = None,
        *,
        connections: str | None = None,
        backend_connections: str | None = None,
    ):
        self.config = config or RouterConfig()
        self._connections_path = connections
        self._backend_path = backend_connections
        self.switchboard = Switchboard()
        self.port: int | None = None
        self._server: Server | None = None

    async def on_start(self) -> None:
        config = self.config
        self.switchboard = Switchboard(
            RoutingTable(
                config.keys,
                authenticate=config.verify_agent is not None,
                log_limits=config.log_limits,
                max_frame_bytes=config.max_frame_bytes,
                replay_registrations=config.replay_registrations,
                observe=config.observe,
            )
        )
        supervisors: list[DynamicSupervisor] = []
        for path, name in (
            (self._connections_path, "connections"),
            (self._backend_path, "backend_connections"),
        ):
            supervisor = self.system.supervisor(self._sibling(path, name))
            if not isinstance(supervisor, DynamicSupervisor):
                raise TypeError(f"{supervisor!r} is not a DynamicSupervisor")
            supervisors.append(supervisor)
        handler = functools.partial(
            serve_connection,
            hub=self.ref,
            connections=supervisors[0],
            backend_connections=supervisors[1],
            keys=self.switchboard.table.keys,
            verify=None if config.verify_agent is None else TokenChecks(config.verify_agent).verify,
            release=self.switchboard.release,
        )
        self._server = await serve(
            handler,
            config.host,
            config.port,
            process_request=_only_ws_path,
            process_response=_name_features,
            compression=None,
            max_size=config.max_frame_bytes * TRANSPORT_LIMIT_FACTOR,
            ping_interval=config.ping_interval,
            backlog=config.listen_backlog,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        self.start_soon(self._sweep_forever)

    async def _sweep_forever(self) -> None:
        while True:
            await anyio.sleep(self.config.sweep_interval)
            # An ask, so the next sweep is queued only once this one is handled.
            await self.ref.ask(Sweep(), timeout=None)

    async def handle(self, message: HubMessage) -> Any:
        match message:
            case ReceiveFrame(conn_id, data):
                self.switchboard.receive(conn_id, data)
            case OpenConnection(identity, outbox):
                return self.switchboard.open(identity, outbox)
            case CloseConnection(conn_id):
                self.switchboard.close(conn_id)
            case AbandonConnection(outbox):
                self.switchboard.abandon(outbox)
            case GetStatistics():
                return self.switchboard.statistics()
            case Sweep():
                self.switchboard.sweep()
        return None

    async def on_stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def statistics(self) -> TableStatistics:
        """Return a snapshot of the routing table (does not wait)."""
        return self.switchboard.statistics()

    def _sibling(self, path: str | None, name: str) -> str:
        if path is not None:
            return path
        parent = self.ref.name.rpartition(".")[0]
        return f"{parent}.{name}" if parent else name


def router_children(
    config: RouterConfig | None = None,
    *,
    hub: str = "hub",
    connections: str = "connections",
    backend_connections: str = "backend_connections",
) -> list[ChildSpec]:
    """Return the child specs of the embedded router, in start order.

    ``connections`` and ``backend_connections`` (``DynamicSupervisor``s of temporary
    connection actors with fail-fast bounded mailboxes: the back-end's own connection
    gets the larger bound) come first, then ``hub``. Put them first in a
    ``REST_FOR_ONE`` supervisor: a restart of the hub drops every socket.
    """
    config = config or RouterConfig()

    def supervisor(capacity: int) -> DynamicSupervisor:
        return DynamicSupervisor(
            capacity=capacity,
            overflow=OverflowPolicy.FAIL,
            restart=Restart.TEMPORARY,
            shutdown=1.0,
        )

    return [
        ChildSpec(connections, functools.partial(supervisor, config.outbox_capacity)),
        ChildSpec(
            backend_connections, functools.partial(supervisor, config.backend_outbox_capacity)
        ),
        ChildSpec(hub, functools.partial(RouterHub, config), capacity=config.hub_capacity),
    ]


def _only_ws_path(ws: ServerConnection, request: Request) -> Response | None:
    if request.path.partition("?")[0] != WS_PATH:
        return ws.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
    return None


def _name_features(ws: ServerConnection, request: Request, response: Response) -> None:
    # Only on a socket that opens: a refusal (404) says nothing about extensions.
    if response.status_code == HTTPStatus.SWITCHING_PROTOCOLS:
        response.headers[FEATURES_HEADER] = CORRELATION_FEATURE
