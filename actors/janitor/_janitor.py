"""TurnJanitor: deletes chat turns and their events once they are past their retention.

One sweep every ``interval`` seconds (or at once when asked) deletes the events created,
and the finished turns finished, more than ``retention`` ago (`TurnHistory.
delete_older_than`, a few thousand rows per statement). Sweeps run in a task the actor
owns, so it answers its messages meanwhile. A database that cannot be reached is waited
for with a doubling pause, as the tool refresher does: an outage is not a crash and
spends no restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from persistence import TurnHistory, is_database_unavailable, utcnow
from runtime import Actor, ActorRef, ChildSpec

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = [
    "GetJanitorStatistics",
    "JanitorStatistics",
    "SweepNow",
    "TurnJanitor",
    "TurnJanitorClient",
    "janitor_spec",
]

logger = logging.getLogger(__name__)

_FIRST_PAUSE = 0.2
_LONGEST_PAUSE = 30.0


@dataclass(frozen=True, slots=True)
class SweepNow:
    """Sweep now; answers an event set once a sweep that began after it ends."""


@dataclass(frozen=True, slots=True)
class GetJanitorStatistics:
    """Ask for a :class:`JanitorStatistics` snapshot."""


@dataclass(frozen=True, slots=True)
class JanitorStatistics:
    """What the janitor did so far.

    Attributes:
        sweeps: Sweeps finished.
        events_deleted: Events deleted, since the start.
        turns_deleted: Turns deleted, since the start.
        last_sweep_seconds: How long the last finished sweep took.
        database_waits: Times a sweep waited for the database.
        waiting_for_database: Whether it waits for the database now.
    """

    sweeps: int
    events_deleted: int
    turns_deleted: int
    last_sweep_seconds: float
    database_waits: int
    waiting_for_database: bool


JanitorMessage = SweepNow | GetJanitorStatistics


class TurnJanitor(Actor[JanitorMessage]):
    """Delete what is older than ``retention`` every ``interval`` seconds.

    Args:
        sessionmaker: The database.
        retention: How long turns and events are kept.
        interval: Seconds between the end of a sweep and the start of the next; the
            first sweep runs at the start.
        first_pause: First pause while the database is down; doubled up to ``longest_pause``.
        longest_pause: The longest such pause.
        now: The wall clock (naive UTC), for tests.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        retention: timedelta,
        interval: float,
        first_pause: float = _FIRST_PAUSE,
        longest_pause: float = _LONGEST_PAUSE,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.history = TurnHistory(sessionmaker)
        self.retention = retention
        self.interval = interval
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self.now = now
        self._sweeps = 0
        self._events = 0
        self._turns = 0
        self._last_seconds = 0.0
        self._waits = 0
        self._waiting = False
        self._wake = anyio.Event()
        self._next_done = anyio.Event()

    async def on_start(self) -> None:
        self.start_soon(self._run, name=f"{self.name} sweeps")

    async def handle(self, message: JanitorMessage) -> Any:
        match message:
            case SweepNow():
                self._wake.set()
                return self._next_done
            case GetJanitorStatistics():
                return self.statistics()

    def statistics(self) -> JanitorStatistics:
        """Return a snapshot of the counters (does not wait)."""
        return JanitorStatistics(
            sweeps=self._sweeps,
            events_deleted=self._events,
            turns_deleted=self._turns,
            last_sweep_seconds=self._last_seconds,
            database_waits=self._waits,
            waiting_for_database=self._waiting,
        )

    async def _run(self) -> None:
        while True:
            done = self._next_done
            # A request that comes during this sweep waits for the next one, whose cutoff
            # is later than this one's.
            self._next_done = anyio.Event()
            self._wake = anyio.Event()
            started = time.monotonic()
            await self._sweep()
            self._sweeps += 1
            self._last_seconds = time.monotonic() - started
            done.set()
            with anyio.move_on_after(self.interval):
                await self._wake.wait()

    async def _sweep(self) -> None:
        pause = self.first_pause
        while True:
            try:
                cleaned = await self.history.delete_older_than(self.now() - self.retention)
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                self._waits += 1
                self._waiting = True
                logger.warning("turn janitor waits for the database (%r)", exc)
                await anyio.sleep(pause)
                pause = min(pause * 2, self.longest_pause)
                continue
            self._waiting = False
            self._events += cleaned.events
            self._turns += cleaned.turns
            if cleaned.events or cleaned.turns:
                logger.info(
                    "turn janitor deleted %d events and %d turns", cleaned.events, cleaned.turns
                )
            return


class TurnJanitorClient:
    """Typed client of a :class:`TurnJanitor`."""

    def __init__(self, ref: ActorRef[JanitorMessage]) -> None:
        self._ref = ref

    async def sweep(self) -> None:
        """Ask for a sweep now and wait until one that began after the request ends."""
        done: anyio.Event = await self._ref.ask(SweepNow())
        await done.wait()

    async def statistics(self) -> JanitorStatistics:
        """Return the janitor's counters."""
        stats: JanitorStatistics = await self._ref.ask(GetJanitorStatistics())
        return stats


def janitor_spec(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    retention: timedelta,
    interval: float,
    name: str = "janitor",
    **options: Any,
) -> ChildSpec:
    """Return the child spec of a :class:`TurnJanitor` (``options``: its keyword
    arguments ``first_pause``, ``longest_pause``, ``now``)."""
    return ChildSpec(
        name,
        lambda: TurnJanitor(sessionmaker, retention=retention, interval=interval, **options),
        shutdown=2.0,
    )
