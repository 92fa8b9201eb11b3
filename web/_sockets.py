"""How many front-end sockets each user holds open, and how many are not yet authenticated."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from uuid import UUID

__all__ = ["SocketCounts"]


class SocketCounts:
    """Count the open ``/frontend/ws`` sockets per user, against a limit.

    Sync and never blocking: the check and the count happen in one step of the event
    loop, so two handshakes cannot both take the last place.
    """

    def __init__(self) -> None:
        self._open: dict[UUID, int] = {}
        self._pending = 0

    def acquire_pending_nowait(self, limit: int) -> bool:
        """Take a place for one more handshake whose token is not yet checked.

        Returns:
            False, taking nothing, when ``limit`` handshakes are already in flight.
        """
        if self._pending >= limit:
            return False
        self._pending += 1
        return True

    def release_pending(self) -> None:
        """Give back a place taken with `acquire_pending_nowait` (once per place)."""
        self._pending -= 1

    @property
    def pending(self) -> int:
        """The handshakes in flight whose token is not yet checked."""
        return self._pending

    def acquire_nowait(self, user_id: UUID, limit: int) -> bool:
        """Take a place for one more socket of ``user_id``.

        Returns:
            False, taking nothing, when the user already holds ``limit`` sockets.
        """
        held = self._open.get(user_id, 0)
        if held >= limit:
            return False
        self._open[user_id] = held + 1
        return True

    def release(self, user_id: UUID) -> None:
        """Give back a place taken with `acquire_nowait` (once per place)."""
        held = self._open.get(user_id, 0) - 1
        if held > 0:
            self._open[user_id] = held
        else:
            self._open.pop(user_id, None)

    def held(self, user_id: UUID) -> int:
        """Return how many sockets ``user_id`` holds open."""
        return self._open.get(user_id, 0)
