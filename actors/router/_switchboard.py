"""The switchboard: the routing table plus the outbox of every open connection.

All its methods are synchronous and never wait, so on one event loop they run atomically:
a frame is routed, and its effects queued on the target outboxes, before the next frame
is looked at. Outboxes are bounded; a connection whose outbox is full is closed (code
1013) rather than allowed to hold everyone else up.

A socket that closes tells the hub so; in a storm that message may not get through in
time, so every closing outbox is also put in :meth:`Switchboard.release`'s set, which
:meth:`Switchboard.sweep` empties: a connection is removed by the second sweep after its
release at the latest, so no route outlives its socket for long.
"""

from __future__ import annotations

import dataclasses
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
        self._conn_of: dict[Outbox, str] = {}
        self._released: set[Outbox] = set()
        self._marked: set[Outbox] = set()
        self.dropped_frames = 0
        self.swept = 0

    def open(self, identity: Identity, outbox: Outbox) -> str | None:
        """Add a connection and return its id (the ``invoked_by`` of its calls), or
        ``None`` if the table refuses it (`RoutingTable.admit`)."""
        admitted = self.table.admit(identity)
        if admitted is None:
            return None
        conn_id, out = self.table.open(admitted)
        self._outboxes[conn_id] = outbox
        self._conn_of[outbox] = conn_id
        self._deliver(out)
        return conn_id

    def receive(self, conn_id: str, data: str | bytes | Frame) -> None:
        """Route one frame received on ``conn_id``."""
        self._deliver(self.table.receive(conn_id, data))

    def close(self, conn_id: str) -> None:
        """Remove a connection whose socket has closed. Idempotent."""
        if (outbox := self._outboxes.pop(conn_id, None)) is not None:
            self._conn_of.pop(outbox, None)
            self._deliver(self.table.close(conn_id))

    def abandon(self, outbox: Outbox) -> None:
        """Remove the connection whose outbox is ``outbox``, if any. Idempotent."""
        if (conn_id := self._conn_of.get(outbox)) is not None:
            self.close(conn_id)

    def release(self, outbox: Outbox) -> None:
        """Note that the socket of ``outbox`` is gone and sends nothing more (does not
        wait, never fails): a later :meth:`sweep` removes its connection if nothing
        else has by then. Safe to call from any task of the hub's event loop."""
        self._released.add(outbox)

    def sweep(self) -> int:
        """Remove the connections released before the previous sweep; return how many
        were still open.

        Waiting one more sweep is what makes this safe: every frame a socket read was
        queued to the hub before its release, so before the next sweep was queued,
        provided each sweep is queued only after the previous one was handled.
        """
        marked, self._marked, self._released = self._marked, self._released, set()
        removed = 0
        for outbox in marked:
            if (conn_id := self._conn_of.get(outbox)) is not None:
                removed += 1
                self.close(conn_id)
        self.swept += removed
        return removed

    def statistics(self) -> TableStatistics:
        """Return a snapshot of the routing table."""
        return dataclasses.replace(self.table.statistics(), swept_connections=self.swept)

    def _deliver(self, out: list[Deliver]) -> None:
        for item in out:
            outbox = self._outboxes.get(item.conn_id)
            if outbox is None:
                self.dropped_frames += 1
            elif not outbox.send_nowait(item.frame):
                self.dropped_frames += 1
                logger.warning("closing %s: its outbox is full", item.conn_id)
                outbox.overflow()
