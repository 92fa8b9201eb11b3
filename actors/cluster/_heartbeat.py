"""Heartbeat: this process's row among its peers, and the clean-up after a peer that died.

Several ``serve`` processes may share one database. Each runs a `Heartbeat`, which

- writes the process's row (``backendprocesses``) as part of its synchronous start, so
  that the process is visible to its peers before it is ready, then every ``interval``
  seconds moves its ``last_seen`` forward (the database's clock);
- at each beat, takes a peer whose row has not moved for ``timeout`` seconds for dead:
  finishes the chat turns it left open (``interrupted``, with the reply ``reply_for``
  builds, stored and sent to the session's next socket), then deletes its row. Several
  processes may find the same dead peer at once; row locks taken with ``SKIP LOCKED``
  finish each turn once, and the row is deleted once;
- at its first beat also finishes the turns of no live process (NULL, or a process
  without a row: an earlier run of a server that did not stop cleanly) — the start-up
  sweep one process alone made before;
- deletes its own row on a clean stop (best effort, under a short deadline), so that
  its peers stop listing it at once.

A database that cannot be reached is waited for with a doubling pause, as the janitor
does: an outage is not a crash and spends no restart. A process cut off from the
database for longer than ``timeout`` is taken for dead by its peers, which finish its
open turns; its next beat writes its row again (logged as a warning).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio

from persistence import (
    ProcessIdentity,
    ProcessRecord,
    ProcessTable,
    TurnHistory,
    TurnStatus,
    is_database_unavailable,
)
from runtime import Actor, ActorRef, ChildSpec

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from persistence import ReplyFor

__all__ = [
    "BeatNow",
    "GetHeartbeatStatus",
    "Heartbeat",
    "HeartbeatClient",
    "HeartbeatStatus",
    "PeerStatus",
    "heartbeat_spec",
    "process_identity",
]

logger = logging.getLogger(__name__)

_FIRST_PAUSE = 0.2
_LONGEST_PAUSE = 30.0
# A clean stop deletes the row within this; past it, the peers' timeout does.
_LEAVE_DEADLINE = 1.0


@dataclass(frozen=True, slots=True)
class BeatNow:
    """Beat now; answers an event set once a beat that began after it ends."""


@dataclass(frozen=True, slots=True)
class GetHeartbeatStatus:
    """Ask for a :class:`HeartbeatStatus` snapshot."""


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """A live peer as the last beat saw it.

    Attributes:
        id: The peer process.
        http_url: Where its HTTP face answers (None: not said).
        owns_router: Whether the embedded router runs in it.
        started_at: When it first beat (the database's clock, naive UTC).
        last_seen_seconds_ago: Seconds since its last beat, at the time of the snapshot.
    """

    id: uuid.UUID
    http_url: str | None
    owns_router: bool
    started_at: datetime
    last_seen_seconds_ago: float


@dataclass(frozen=True, slots=True)
class HeartbeatStatus:
    """This process among its peers, and what the heartbeat did so far.

    Attributes:
        process: This process's identity.
        started_at: When its row was first written (None: not yet, the database was down).
        peers: The live peers the last beat saw, oldest first.
        beats: Beats written.
        peers_forgotten: Peers taken for dead and deleted by this process.
        turns_interrupted: Turns this process finished for processes that are gone.
        database_waits: Times a beat waited for the database.
        waiting_for_database: Whether it waits for the database now.
    """

    process: ProcessIdentity
    started_at: datetime | None
    peers: tuple[PeerStatus, ...]
    beats: int
    peers_forgotten: int
    turns_interrupted: int
    database_waits: int
    waiting_for_database: bool

    def to_dict(self) -> dict[str, Any]:
        """Return the part ``/health`` shows: identity and peers, as JSON values."""
        return {
            "process": {
                "id": str(self.process.id),
                "started_at": None if self.started_at is None else self.started_at.isoformat(),
                "owns_router": self.process.owns_router,
            },
            "peers": [
                {
                    "id": str(peer.id),
                    "http_url": peer.http_url,
                    "last_seen_seconds_ago": round(peer.last_seen_seconds_ago, 3),
                }
                for peer in self.peers
            ],
        }


HeartbeatMessage = BeatNow | GetHeartbeatStatus


class Heartbeat(Actor[HeartbeatMessage]):
    """Keep this process's row alive and clean up after peers that died (see the module).

    Args:
        sessionmaker: The database.
        process: This process's identity.
        reply_for: Builds the stored content and ``agent_response`` frame of each turn
            finished for a dead process (the frame format lives with the chat actor).
        interval: Seconds between the end of a beat and the start of the next.
        timeout: Seconds without a beat after which a process counts as gone; more
            than twice ``interval``, so that one late beat is not a death.
        first_pause: First pause while the database is down; doubled up to ``longest_pause``.
        longest_pause: The longest such pause.
        leave_deadline: Seconds a clean stop may spend deleting the row.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        process: ProcessIdentity,
        *,
        reply_for: ReplyFor,
        interval: float,
        timeout: float,
        first_pause: float = _FIRST_PAUSE,
        longest_pause: float = _LONGEST_PAUSE,
        leave_deadline: float = _LEAVE_DEADLINE,
    ) -> None:
        if timeout <= 2 * interval:
            raise ValueError(
                f"peer timeout {timeout} s must exceed twice the beat interval {interval} s"
            )
        self.table = ProcessTable(sessionmaker)
        self.history = TurnHistory(sessionmaker)
        self.process = process
        self.reply_for = reply_for
        self.interval = interval
        self.timeout = timeout
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self.leave_deadline = leave_deadline
        self._started_at: datetime | None = None
        self._swept_unowned = False
        self._peers: list[ProcessRecord] = []
        self._peers_at = time.monotonic()
        self._beats = 0
        self._forgotten = 0
        self._interrupted = 0
        self._waits = 0
        self._waiting = False
        self._wake = anyio.Event()
        self._next_done = anyio.Event()

    async def on_start(self) -> None:
        # The first beat is part of the start: once started, the process is visible
        # (and the turns a dead run left are finished) before anything else starts. A
        # database that is down now is waited for by the beats, not by the start.
        await self._try_beat()
        self.start_soon(self._run, name=f"{self.name} beats")

    async def on_stop(self) -> None:
        with anyio.move_on_after(self.leave_deadline):
            try:
                await self.table.leave(self.process.id)
            except Exception as exc:  # best effort: the peers' timeout covers it
                logger.warning("process row left for the peers to delete (%r)", exc)

    async def handle(self, message: HeartbeatMessage) -> Any:
        match message:
            case BeatNow():
                self._wake.set()
                return self._next_done
            case GetHeartbeatStatus():
                return self.status()

    def status(self) -> HeartbeatStatus:
        """Return a snapshot of this process and its peers (does not wait)."""
        age = time.monotonic() - self._peers_at
        peers = tuple(
            PeerStatus(
                id=peer.id,
                http_url=peer.http_url,
                owns_router=peer.owns_router,
                started_at=peer.started_at,
                last_seen_seconds_ago=peer.seconds_ago + age,
            )
            for peer in self._peers
        )
        return HeartbeatStatus(
            process=self.process,
            started_at=self._started_at,
            peers=peers,
            beats=self._beats,
            peers_forgotten=self._forgotten,
            turns_interrupted=self._interrupted,
            database_waits=self._waits,
            waiting_for_database=self._waiting,
        )

    async def _run(self) -> None:
        if self._beats:  # the start beat
            await self._pause()
        while True:
            done = self._next_done
            # A request that comes during this beat waits for the next one.
            self._next_done = anyio.Event()
            self._wake = anyio.Event()
            await self._beat_through_outages()
            done.set()
            await self._pause()

    async def _pause(self) -> None:
        with anyio.move_on_after(self.interval):
            await self._wake.wait()

    async def _beat_through_outages(self) -> None:
        pause = self.first_pause
        while not await self._try_beat():
            await anyio.sleep(pause)
            pause = min(pause * 2, self.longest_pause)

    async def _try_beat(self) -> bool:
        """Beat once; False (counted and logged) if the database is unavailable."""
        try:
            await self._beat()
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            self._waits += 1
            self._waiting = True
            logger.warning("heartbeat waits for the database (%r)", exc)
            return False
        return True

    async def _beat(self) -> None:
        """Write the row, finish what dead peers left, forget them, and list the live."""
        beat = await self.table.beat(self.process, started_at=self._started_at)
        if beat.inserted and self._started_at is not None:
            logger.warning(
                "process row was written anew: the peers took this process for dead "
                "(no beat for %s s) and interrupted its open chat turns",
                self.timeout,
            )
        self._started_at = beat.started_at
        self._beats += 1
        self._waiting = False
        silent = await self.table.gone(self.timeout)
        dead = [peer for peer in await self._dead_here() if peer not in silent]
        gone = silent + dead
        if gone or not self._swept_unowned:
            finished = await self.history.finish_turns_of(
                gone,
                status=TurnStatus.INTERRUPTED,
                reply_for=self.reply_for,
                unowned_after=None if self._swept_unowned else self.timeout,
            )
            self._swept_unowned = True
            self._interrupted += finished
            if finished:
                logger.warning(
                    "%d chat turns of processes that are gone were interrupted", finished
                )
        if gone:
            # A silent one only if it is still silent (it may have come back meanwhile).
            forgotten = await self.table.forget(silent, older_than=self.timeout)
            forgotten += await self.table.forget(dead)
            self._forgotten += forgotten
            if forgotten:  # a peer that found them at the same time logs nothing
                logger.warning(
                    "peer processes gone after %s s without a beat: %s",
                    self.timeout,
                    ", ".join(str(peer) for peer in gone),
                )
        self._peers = await self.table.peers(self.timeout, exclude=self.process.id)
        self._peers_at = time.monotonic()

    async def _dead_here(self) -> list[uuid.UUID]:
        """The peers on this machine whose operating-system process is gone.

        A server that is started again after a crash finds its former run this way at
        once, instead of after the timeout, so the turns that run left are answered
        before its first socket is accepted. A reused pid only delays that to the
        timeout.
        """
        hostname = self.process.hostname
        if hostname is None:
            return []
        peers = await self.table.peers(self.timeout, exclude=self.process.id)
        return [
            peer.id
            for peer in peers
            if peer.hostname == hostname and peer.pid is not None and not _pid_alive(peer.pid)
        ]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class HeartbeatClient:
    """Typed client of a :class:`Heartbeat`."""

    def __init__(self, ref: ActorRef[HeartbeatMessage]) -> None:
        self._ref = ref

    async def beat(self) -> None:
        """Ask for a beat now and wait until one that began after the request ends."""
        done: anyio.Event = await self._ref.ask(BeatNow())
        await done.wait()

    async def status(self) -> HeartbeatStatus:
        """Return this process's identity and the peers it saw."""
        status: HeartbeatStatus = await self._ref.ask(GetHeartbeatStatus())
        return status


def process_identity(
    process_id: uuid.UUID, *, http_url: str | None = None, owns_router: bool = False
) -> ProcessIdentity:
    """Return the identity of this operating-system process (its pid and hostname)."""
    return ProcessIdentity(
        id=process_id,
        http_url=http_url,
        owns_router=owns_router,
        pid=os.getpid(),
        hostname=socket.gethostname(),
    )


def heartbeat_spec(
    sessionmaker: async_sessionmaker[AsyncSession],
    process: ProcessIdentity,
    *,
    reply_for: ReplyFor,
    interval: float,
    timeout: float,
    name: str = "heartbeat",
    **options: Any,
) -> ChildSpec:
    """Return the child spec of a :class:`Heartbeat` (``options``: its keyword arguments
    ``first_pause``, ``longest_pause``, ``leave_deadline``)."""
    leave = float(options.get("leave_deadline", _LEAVE_DEADLINE))
    return ChildSpec(
        name,
        lambda: Heartbeat(
            sessionmaker,
            process,
            reply_for=reply_for,
            interval=interval,
            timeout=timeout,
            **options,
        ),
        shutdown=leave + 1.0,
    )
