"""The embedded router: the WebSocket hub that agents, the master agent and the back-end
connect to (spec PROTOCOL.md §1), compatible with unmodified ``genai-protocol`` 1.0.9
and 2.x clients.

Endpoint: ``ws://<host>:<port>/ws`` (default port 8080); other paths get 404.

Identity, from the handshake headers, first match wins:

- ``API-KEY: <key>``: the back-end key gives ``master_server_be``, the master-agent key
  ``master_server_ml``; any other key gives no identity.
- ``X-Custom-Authorization: <agent JWT>``: the ``sub`` claim. With a ``verify_agent``
  (``RouterConfig``; the embedded router's checks the signature and that the agent
  exists) the socket is routable only once the token is verified; without one the
  claim is trusted, as upstream does (a non-JWT value is then itself the id).
- ``x-custom-invoke-key: <caller>:<target>``: a library ``send()`` socket; with a
  verifier, admitted only if the caller is a master key or a connected verified agent.

With a verifier, an agent is invoked only by its owner's agents or a master key, and
only verified agents log, each within a token bucket (``LogLimits``). Always, a reply
goes only to a connection its sender owes one, and a second back-end connection waits
as a standby until the first closes.

Close codes: **4000** ``"Missing Authorization header"`` when a socket has no identity
(or a token claims a master id, or the table refuses it); **4001** ``"Invalid agent
token"`` after the error frame an agent stops on; **1013** when a connection's outbox
overflows because the peer does not read (the back-end's own connection, which carries every agent's
logs, has a far larger outbox: ``backend_outbox_capacity``); **1009** from the
transport for frames over four times the frame limit; **1001** when the router stops.

Frame limit: ``max_frame_bytes`` (default 1 MiB, the library client's own limit). A
larger frame is refused with ``{"message_type": "agent_error", "error": {"error_message":
"Frame of N bytes exceeds the limit of M bytes", "error_type":
"InvalidJSONRequestFormat"}}`` to its sender; if it was a reply, its caller gets an
``agent_error`` instead of waiting forever. The connection stays open.

Running it: ``async with open_router(host, port) as router`` (``port=0`` picks one;
``router.url`` is the agents' ``ROUTER_WS_URL``), or inside a supervision tree with
``Supervisor([*router_children(RouterConfig(...)), ...], strategy=REST_FOR_ONE)``:
a ``connections`` ``DynamicSupervisor`` (one ``ConnectionActor`` per socket, its
bounded mailbox being the socket's outbox), a ``backend_connections`` one for the
back-end's own socket, then the ``hub`` (``RouterHub``,
owning the routing table and the listening socket).

Each connection gets a unique id ``"<client id>#<n>"``, stamped as ``invoked_by`` on the
invocations it sends; replies are routed by it. Unlike upstream, a closing socket removes
its client id only if it still owns it, invoke sockets cause no ``agent_unregister``,
and "Agent has been unregistered" goes to exactly the connections with calls pending on
the closed one.

Our extension, for our back-ends only: the handshake response says
``X-GenAI-Router: correlation`` (`FEATURES_HEADER`), and a back-end connection's
``agent_invoke`` carrying ``"correlation_id": "<str>"`` is answered on that same
connection with the ``correlation_id`` added back, so a back-end needs no socket per
call. The callee sees an ordinary invocation.
"""

from __future__ import annotations

from ._budget import LogLimits as LogLimits
from ._connection import CLOSE_INVALID_TOKEN as CLOSE_INVALID_TOKEN
from ._connection import CLOSE_MISSING_IDENTITY as CLOSE_MISSING_IDENTITY
from ._connection import CLOSE_OUTBOX_OVERFLOW as CLOSE_OUTBOX_OVERFLOW
from ._connection import ConnectionActor as ConnectionActor
from ._connection import SendFrame as SendFrame
from ._envelope import AGENT_NOT_ACTIVE as AGENT_NOT_ACTIVE
from ._envelope import AGENT_UNREGISTERED as AGENT_UNREGISTERED
from ._envelope import ErrorType as ErrorType
from ._envelope import Frame as Frame
from ._envelope import MessageType as MessageType
from ._exceptions import FrameTooLargeError as FrameTooLargeError
from ._exceptions import InvalidFrameError as InvalidFrameError
from ._exceptions import RouterError as RouterError
from ._hub import CORRELATION_FEATURE as CORRELATION_FEATURE
from ._hub import DEFAULT_PORT as DEFAULT_PORT
from ._hub import FEATURES_HEADER as FEATURES_HEADER
from ._hub import AbandonConnection as AbandonConnection
from ._hub import CloseConnection as CloseConnection
from ._hub import GetStatistics as GetStatistics
from ._hub import HubMessage as HubMessage
from ._hub import OpenConnection as OpenConnection
from ._hub import ReceiveFrame as ReceiveFrame
from ._hub import RouterConfig as RouterConfig
from ._hub import RouterHub as RouterHub
from ._hub import Sweep as Sweep
from ._hub import router_children as router_children
from ._identity import MASTER_SERVER_BE as MASTER_SERVER_BE
from ._identity import MASTER_SERVER_ML as MASTER_SERVER_ML
from ._identity import AgentVerifier as AgentVerifier
from ._identity import ApiKeys as ApiKeys
from ._identity import ClientKind as ClientKind
from ._identity import Identity as Identity
from ._identity import VerifiedAgent as VerifiedAgent
from ._identity import identify as identify
from ._server import RunningRouter as RunningRouter
from ._server import open_router as open_router
from ._switchboard import Outbox as Outbox
from ._switchboard import Switchboard as Switchboard
from ._table import CORRELATION_ID as CORRELATION_ID
from ._table import DEFAULT_MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
from ._table import AgentStepObserver as AgentStepObserver
from ._table import Deliver as Deliver
from ._table import RoutingTable as RoutingTable
from ._table import TableStatistics as TableStatistics

__all__ = [
    "AGENT_NOT_ACTIVE",
    "AGENT_UNREGISTERED",
    "CLOSE_INVALID_TOKEN",
    "CLOSE_MISSING_IDENTITY",
    "CLOSE_OUTBOX_OVERFLOW",
    "CORRELATION_FEATURE",
    "CORRELATION_ID",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_PORT",
    "FEATURES_HEADER",
    "AbandonConnection",
    "AgentStepObserver",
    "AgentVerifier",
    "ApiKeys",
    "ClientKind",
    "CloseConnection",
    "ConnectionActor",
    "Deliver",
    "ErrorType",
    "Frame",
    "FrameTooLargeError",
    "GetStatistics",
    "HubMessage",
    "Identity",
    "InvalidFrameError",
    "LogLimits",
    "MessageType",
    "OpenConnection",
    "Outbox",
    "ReceiveFrame",
    "RouterConfig",
    "RouterError",
    "RouterHub",
    "RoutingTable",
    "RunningRouter",
    "SendFrame",
    "Sweep",
    "Switchboard",
    "TableStatistics",
    "VerifiedAgent",
    "identify",
    "open_router",
    "router_children",
]
