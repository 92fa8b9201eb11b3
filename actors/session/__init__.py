"""The router session: the back-end's connection to the router as ``master_server_be``.

It forwards agent events (``agent_register``, ``agent_unregister``, ``agent_log``) to the
registry and invokes the master agent (``master_server_ml``) for the chat actors through
`RouterSessionClient.invoke_master`: the outcome comes back to the caller's actor as a
`MasterReplied` message, a reply or a `MasterAgentError` whose ``str()`` is the text to
show the user. A router that is down is waited for inside the session, not by crashing.
Works with the embedded router and an upstream one alike.
"""

from __future__ import annotations

from ._connection import Connector as Connector
from ._connection import RouterConnection as RouterConnection
from ._connection import WebSocketConnector as WebSocketConnector
from ._events import AgentEvent as AgentEvent
from ._events import AgentLogged as AgentLogged
from ._events import AgentRegistered as AgentRegistered
from ._events import AgentUnregistered as AgentUnregistered
from ._events import parse_forward as parse_forward
from ._exceptions import ROUTER_UNAVAILABLE as ROUTER_UNAVAILABLE
from ._exceptions import MasterAgentError as MasterAgentError
from ._exceptions import MasterFailedError as MasterFailedError
from ._exceptions import MasterNotActiveError as MasterNotActiveError
from ._exceptions import MasterTimeoutError as MasterTimeoutError
from ._exceptions import RouterConnectionError as RouterConnectionError
from ._exceptions import RouterSessionError as RouterSessionError
from ._exceptions import RouterUnavailableError as RouterUnavailableError
from ._local import LocalConnector as LocalConnector
from ._session import DEFAULT_RECONNECT as DEFAULT_RECONNECT
from ._session import MASTER_AGENT_ID as MASTER_AGENT_ID
from ._session import CancelInvoke as CancelInvoke
from ._session import GetStatus as GetStatus
from ._session import InvokeMaster as InvokeMaster
from ._session import MasterReplied as MasterReplied
from ._session import MasterReply as MasterReply
from ._session import NotifyAgent as NotifyAgent
from ._session import RouterSession as RouterSession
from ._session import RouterSessionClient as RouterSessionClient
from ._session import SessionConfig as SessionConfig
from ._session import SessionMessage as SessionMessage
from ._session import SessionStatus as SessionStatus
from ._session import router_session_spec as router_session_spec

__all__ = [
    "DEFAULT_RECONNECT",
    "MASTER_AGENT_ID",
    "ROUTER_UNAVAILABLE",
    "AgentEvent",
    "AgentLogged",
    "AgentRegistered",
    "AgentUnregistered",
    "CancelInvoke",
    "Connector",
    "GetStatus",
    "InvokeMaster",
    "LocalConnector",
    "MasterAgentError",
    "MasterFailedError",
    "MasterNotActiveError",
    "MasterReplied",
    "MasterReply",
    "MasterTimeoutError",
    "NotifyAgent",
    "RouterConnection",
    "RouterConnectionError",
    "RouterSession",
    "RouterSessionClient",
    "RouterSessionError",
    "RouterUnavailableError",
    "SessionConfig",
    "SessionMessage",
    "SessionStatus",
    "WebSocketConnector",
    "parse_forward",
    "router_session_spec",
]
