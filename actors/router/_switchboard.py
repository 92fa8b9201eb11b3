"""The switchboard: the routing table plus the outbox of every open connection.

All its methods are synchronous and never wait, so on one event loop they run atomically:
a frame is routed, and its effects queued on the target outboxes, before the next frame
is looked at. Outboxes are bounded; a connection whose outbox is full is closed (code
1013) rather than allowed to hold everyone else up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from ._table import RoutingTable

if TYPE_CHECKING:
    from ._envelope import Frame
    from ._identity import Identity
    from ._table import Deliver, TableStatistics

__all__ = ["Outbox", "Switchboard"]

logger = logging.getLogger(__name__)


class Outbox(Protocol):
    """Where the switchboard puts the frames for one connection."""

    def send_nowait(self, frame: Frame | str) -> bool:
        """Queue a frame (an object, or JSON text) for the connection; return ``False``
        if the outbox is full. A socket's outbox encodes objects as it sends them."""
        ...

    def overflow(self) -> None:
        """Close the connection because its outbox is full. Does not wait."""
        ...


class Switchboard:
    """Route frames between connections according to a :class:`RoutingTable`.

    Args:
        table: The routing table; a fresh default one if omitted.
    """

    def __init__(self, table: RoutingTable | None = None) -> None:
        self.table = table if table is not None else RoutingTable()
        self._outboxes: dict[str, Outbox] = {}
        self.dropped_frames = 0

    def open(self, identity: Identity, outbox: Outbox) -> str:
        """Add a connection and return its id (the ``invoked_by`` of its calls)."""
        conn_id, out = self.table.open(identity)
        self._outboxes[conn_id] = outbox
        self._deliver(out)
        return conn_id

    def receive(self, conn_id: str, data: str | bytes | Frame) -> None:
        """Route one frame received on ``conn_id``."""
        self._deliver(self.table.receive(conn_id, data))

    def close(self, conn_id: str) -> None:
        """Remove a connection whose socket has closed. Idempotent."""
        if self._outboxes.pop(conn_id, None) is not None:
            self._deliver(self.table.close(conn_id))

    def abandon(self, outbox: Outbox) -> None:
        """Remove the connection whose outbox is ``outbox``, if any. Idempotent.

        Rare (a socket that gave up before the hub answered), so a scan is fine.
        """
        for conn_id, known in list(self._outboxes.items()):
            if known is outbox:
                self.close(conn_id)

    def statistics(self) -> TableStatistics:
        """Return a snapshot of the routing table."""
        return self.table.statistics()

    def _deliver(self, out: list[Deliver]) -> None:
        for item in out:
            outbox = self._outboxes.get(item.conn_id)
            if outbox is None:
                self.dropped_frames += 1
            elif not outbox.send_nowait(item.frame):
                self.dropped_frames += 1
                logger.warning("closing %s: its outbox is full", item.conn_id)
                outbox.overflow()
