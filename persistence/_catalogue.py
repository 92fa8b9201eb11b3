"""What changed in users' catalogues (their agents and flows), as PostgreSQL tells us.

The database notifies the ``genai_catalogue`` channel on every committed change of an
agent or a flow, with the owner's id (a trigger; ``*`` for a TRUNCATE). A process that
listens keeps a version per user: anything it derived from a user's catalogue while
the version was ``v`` is current as long as the version is still ``v``. While nobody
listens (not connected yet, connection lost), there is no version at all, so nothing
derived can be trusted; on every (re)connect all versions move on, since changes made
in between were never heard of.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

from ._notify import listen

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

__all__ = ["CATALOGUE_CHANNEL", "CatalogueVersions", "listen_for_catalogue_changes"]

logger = logging.getLogger(__name__)

CATALOGUE_CHANNEL = "genai_catalogue"

CatalogueVersion = tuple[int, int]


class CatalogueVersions:
    """The version of each user's catalogue as this process knows it."""

    def __init__(self) -> None:
        self._epoch = 0
        self._versions: dict[uuid.UUID, int] = {}
        self._live = False

    @property
    def live(self) -> bool:
        """Whether changes are being heard (versions exist only then)."""
        return self._live

    def current(self, user_id: uuid.UUID) -> CatalogueVersion | None:
        """Return the user's catalogue version, or None while changes are not heard."""
        if not self._live:
            return None
        return self._epoch, self._versions.get(user_id, 0)

    def changed(self, user_id: uuid.UUID) -> None:
        """Note that the user's agents or flows changed (also told by the writer itself,
        so that its next read sees the change without waiting for the notification)."""
        self._versions[user_id] = self._versions.get(user_id, 0) + 1

    def changed_all(self) -> None:
        """Note that anyone's catalogue may have changed."""
        self._epoch += 1
        self._versions.clear()

    def heard(self, payload: str) -> None:
        """Apply one notification of the channel."""
        if payload == "*":
            self.changed_all()
            return
        try:
            self.changed(uuid.UUID(payload))
        except ValueError:
            logger.warning("unexpected catalogue notification: %.100r", payload)
            self.changed_all()

    def listening(self) -> None:
        """Changes are heard from now on; what happened before is unknown."""
        self.changed_all()
        self._live = True

    def deaf(self) -> None:
        """Changes are no longer heard."""
        self._live = False
        self.changed_all()


@contextlib.asynccontextmanager
async def listen_for_catalogue_changes(
    url: str | URL, versions: CatalogueVersions
) -> AsyncIterator[anyio.Event]:
    """Listen for catalogue changes on a connection of its own for the block's duration.

    Yields:
        An event set when the connection is lost; ``versions`` is live until then.

    Raises:
        OSError, asyncpg.PostgresError: The database cannot be reached.
    """
    async with listen(url, CATALOGUE_CHANNEL, versions.heard) as lost:
        versions.listening()
        try:
            yield lost
        finally:
            versions.deaf()
