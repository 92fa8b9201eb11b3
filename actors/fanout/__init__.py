"""Live delivery to front-end sockets: the per-socket outbox and the log fan-out.

`LogFanout` (started with `log_fanout_spec`) pushes each stored agent log as an
``agent_log`` frame to the sockets that the log's owner (``creator_id``) has open on the
log's session, and to no one else. The registry reports stored logs through the
`LogSink` port, which `LogFanoutClient` implements. `LogRelay` (``log_relay_spec``)
brings it the logs that other processes stored (``NOTIFY genai_logs``), for the sockets
subscribed in this one.
"""

from __future__ import annotations

from ._fanout import LogFanout as LogFanout
from ._fanout import LogFanoutClient as LogFanoutClient
from ._fanout import LogSink as LogSink
from ._fanout import LogsStored as LogsStored
from ._fanout import SubscribeLogs as SubscribeLogs
from ._fanout import Subscriptions as Subscriptions
from ._fanout import UnsubscribeLogs as UnsubscribeLogs
from ._fanout import log_fanout_spec as log_fanout_spec
from ._fanout import log_frame as log_frame
from ._outbox import DEFAULT_OUTBOX_CAPACITY as DEFAULT_OUTBOX_CAPACITY
from ._outbox import SocketOutbox as SocketOutbox
from ._relay import LogRelay as LogRelay
from ._relay import log_relay_spec as log_relay_spec

__all__ = [
    "DEFAULT_OUTBOX_CAPACITY",
    "LogFanout",
    "LogFanoutClient",
    "LogRelay",
    "LogSink",
    "LogsStored",
    "SocketOutbox",
    "SubscribeLogs",
    "Subscriptions",
    "UnsubscribeLogs",
    "log_fanout_spec",
    "log_frame",
    "log_relay_spec",
]
