"""actors package."""

from __future__ import annotations

from .chat import ChatDeps as ChatDeps
from .chat import ChatsClient as ChatsClient
from .chat import ChatSupervisor as ChatSupervisor
from .chat import chat_supervisor_spec as chat_supervisor_spec
from .fanout import LogFanout as LogFanout
from .fanout import LogFanoutClient as LogFanoutClient
from .fanout import LogSink as LogSink
from .fanout import log_fanout_spec as log_fanout_spec

__all__: list[str] = [
    "ChatDeps",
    "ChatSupervisor",
    "ChatsClient",
    "LogFanout",
    "LogFanoutClient",
    "LogSink",
    "chat_supervisor_spec",
    "log_fanout_spec",
]
