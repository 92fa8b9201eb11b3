"""CatalogueWatcher: listens for catalogue changes for as long as it runs; and
`ChannelWatcher`, its machinery, for any notification channel.

A watcher owns one task that listens on a connection of its own. When that connection cannot
be opened or is lost, the versions stop being live at once (whatever was derived from
them is no longer trusted) and the task tries again after a pause that doubles up to a
cap, logging each failure: an outage of the database must neither stop the server nor
spend its restart budget, as the registry's buffer does not.
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import anyio

from persistence import listen_for_catalogue_changes
from runtime import Actor, ChildSpec

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from persistence import CatalogueVersions

__all__ = ["CatalogueWatcher", "ChannelWatcher", "catalogue_watcher_spec"]

logger = logging.getLogger(__name__)

_FIRST_PAUSE = 0.2
_LONGEST_PAUSE = 10.0


class ChannelWatcher(Actor[None]):
    """Listen to a notification channel for as long as it runs, and again after each
    loss, never crashing over an outage.

    A subclass says how to listen (`listen`) and what to do while it does (`heard`,
    which returns when the connection is lost).

    Args:
        first_pause: Seconds before the first retry; doubled up to ``longest_pause``.
        longest_pause: The longest pause between retries.

    Attributes:
        attempts: Times it tried to listen (for health and tests).
        connects: Times it did.
    """

    #: What it listens for, in its log lines.
    subject = "notifications"

    def __init__(
        self, *, first_pause: float = _FIRST_PAUSE, longest_pause: float = _LONGEST_PAUSE
    ) -> None:
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self.attempts = 0
        self.connects = 0

    def listen(self) -> AbstractAsyncContextManager[anyio.Event]:
        """Open the listening connection; the event is set when it is lost."""
        raise NotImplementedError

    async def heard(self, lost: anyio.Event) -> None:
        """Run while listening; return once ``lost`` is set."""
        await lost.wait()

    async def on_start(self) -> None:
        self.start_soon(self._watch, name=f"{self.name} listener")

    async def handle(self, message: None) -> Any:
        return None

    async def _watch(self) -> None:
        pause = self.first_pause
        while True:
            self.attempts += 1
            try:
                async with self.listen() as lost:
                    self.connects += 1
                    pause = self.first_pause
                    logger.debug("listening for %s", self.subject)
                    await self.heard(lost)
                logger.warning("the %s listener lost its connection", self.subject)
            except Exception as exc:
                logger.warning("cannot listen for %s (%r); retrying", self.subject, exc)
            await anyio.sleep(pause)
            pause = min(pause * 2, self.longest_pause)


class CatalogueWatcher(ChannelWatcher):
    """Keep ``versions`` live while the database can tell us what changes.

    Args:
        url: The database.
        versions: What to keep up to date.
        first_pause: Seconds before the first retry; doubled up to ``longest_pause``.
        longest_pause: The longest pause between retries.
    """

    subject = "catalogue changes"

    def __init__(
        self,
        url: str | URL,
        versions: CatalogueVersions,
        *,
        first_pause: float = _FIRST_PAUSE,
        longest_pause: float = _LONGEST_PAUSE,
    ) -> None:
        super().__init__(first_pause=first_pause, longest_pause=longest_pause)
        self.url = url
        self.versions = versions

    def listen(self) -> AbstractAsyncContextManager[anyio.Event]:
        # While it is lost, nothing is cached: every list reads the database.
        return listen_for_catalogue_changes(self.url, self.versions)

    async def on_stop(self) -> None:
        self.versions.deaf()


def catalogue_watcher_spec(
    url: str | URL, versions: CatalogueVersions, *, name: str = "catalogue"
) -> ChildSpec:
    """Return the child spec of a `CatalogueWatcher`."""
    return ChildSpec(name, lambda: CatalogueWatcher(url, versions), shutdown=2.0)
