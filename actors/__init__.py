"""actors package."""

from __future__ import annotations

from .catalogue import CatalogueWatcher as CatalogueWatcher
from .catalogue import catalogue_watcher_spec as catalogue_watcher_spec
from .chat import ChatDeps as ChatDeps
from .chat import ChatsClient as ChatsClient
from .chat import ChatSupervisor as ChatSupervisor
from .chat import chat_supervisor_spec as chat_supervisor_spec
from .fanout import LogFanout as LogFanout
from .fanout import LogFanoutClient as LogFanoutClient
from .fanout import LogSink as LogSink
from .fanout import log_fanout_spec as log_fanout_spec
from .registry import RegistryActor as RegistryActor
from .registry import RegistryClient as RegistryClient
from .registry import RegistryConfig as RegistryConfig
from .registry import RegistryStatistics as RegistryStatistics
from .registry import registry_spec as registry_spec
from .session import LocalConnector as LocalConnector
from .session import MasterAgentError as MasterAgentError
from .session import MasterFailedError as MasterFailedError
from .session import MasterNotActiveError as MasterNotActiveError
from .session import MasterReply as MasterReply
from .session import MasterTimeoutError as MasterTimeoutError
from .session import RouterConnectionError as RouterConnectionError
from .session import RouterSession as RouterSession
from .session import RouterSessionClient as RouterSessionClient
from .session import RouterUnavailableError as RouterUnavailableError
from .session import SessionConfig as SessionConfig
from .session import SessionStatus as SessionStatus
from .session import router_session_spec as router_session_spec

__all__: list[str] = [
    "CatalogueWatcher",
    "ChatDeps",
    "ChatSupervisor",
    "ChatsClient",
    "LocalConnector",
    "LogFanout",
    "LogFanoutClient",
    "LogSink",
    "MasterAgentError",
    "MasterFailedError",
    "MasterNotActiveError",
    "MasterReply",
    "MasterTimeoutError",
    "RegistryActor",
    "RegistryClient",
    "RegistryConfig",
    "RegistryStatistics",
    "RouterConnectionError",
    "RouterSession",
    "RouterSessionClient",
    "RouterUnavailableError",
    "SessionConfig",
    "SessionStatus",
    "catalogue_watcher_spec",
    "chat_supervisor_spec",
    "log_fanout_spec",
    "registry_spec",
    "router_session_spec",
]
