"""LogRelay: the logs other processes stored, pushed to this process's sockets.

Agent logs reach one back-end (the router's current one), whose registry stores them and
notifies ``genai_logs`` in the same transaction with their ids (`LogNotice`). Every
process's relay listens on a connection of its own; on a notice of another process it
reads those rows once, only for the (owner, session) pairs this process has sockets
subscribed on, and tells its `LogFanout` to push them. Its own notices it skips: its
registry handed those logs to the fan-out already.

A relay that was not listening (the connection lost, the database cut) cannot know
what it missed from notices, so on reconnecting it reads instead: the logs stored
after the last id it had handled, of the sessions it has subscribers on, at most
``gap_rows`` of them (the newest) and none older than ``gap_seconds`` (by the database's
clock); then it listens again. The fan-out skips a log it pushed already, so the
overlap of that read with the notices that follow costs nothing twice.
"""

from __future__ import annotations

import collections
import functools
import logging
import uuid
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import anyio

from actors.catalogue import ChannelWatcher
from persistence import LogRepository, listen
from persistence.repositories.logs import LOGS_CHANNEL, LogNotice
from runtime import ChildSpec, Restart

from ._fanout import LogFanoutClient

if TYPE_CHECKING:
    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from persistence import LogEntry

    from ._fanout import Subscriptions

__all__ = ["GAP_ROWS", "GAP_SECONDS", "LogRelay", "RelayCursor", "log_relay_spec"]

logger = logging.getLogger(__name__)

#: The most logs read after an outage of the listener (the newest ones).
GAP_ROWS = 1000
#: How far back, in seconds, a read after an outage goes at most.
GAP_SECONDS = 60.0

# Ranges of notices read in one statement: a burst of notices costs one read.
_RANGES_PER_READ = 1000


class RelayCursor:
    """The highest log id the relay has handled; shared by the instances its spec starts,
    so that a relay restarted after a crash reads what it missed meanwhile.

    Attributes:
        last: That id; None until it first listened.
    """

    def __init__(self) -> None:
        self.last: int | None = None

    def advance(self, log_id: int) -> None:
        if self.last is None or log_id > self.last:
            self.last = log_id


class LogRelay(ChannelWatcher):
    """Push the logs other processes store to the sockets subscribed in this one.

    Args:
        url: The database (the listening connection).
        sessionmaker: For the reads.
        process_id: This process's identity, as its registry writes it in its notices.
        subscriptions: The process's `LogFanout` table.
        cursor: The id handled last (a new one if None).
        fanout: The fan-out's path.
        gap_rows: The most logs read after an outage.
        gap_seconds: The oldest, in seconds, a read after an outage goes back.
        first_pause: Seconds before the first retry to listen, doubled up to
            ``longest_pause``.
        longest_pause: The longest pause.

    Attributes:
        notices: Notices of other processes heard.
        own_notices: This process's own, skipped.
        reads: Statements that read notified logs.
        relayed: Logs handed to the fan-out (read for a subscriber here).
        gap_reads: Reads after an outage of the listener.
        gap_logs: Logs those reads handed to the fan-out.
    """

    subject = "logs stored by other processes"

    def __init__(
        self,
        url: str | URL,
        sessionmaker: async_sessionmaker[AsyncSession],
        process_id: uuid.UUID,
        subscriptions: Subscriptions,
        cursor: RelayCursor | None = None,
        *,
        fanout: str = "fanout",
        gap_rows: int = GAP_ROWS,
        gap_seconds: float = GAP_SECONDS,
        first_pause: float = 0.2,
        longest_pause: float = 10.0,
    ) -> None:
        super().__init__(first_pause=first_pause, longest_pause=longest_pause)
        self.url = url
        self.sessionmaker = sessionmaker
        self.process_id = process_id
        self.subscriptions = subscriptions
        self.cursor = cursor if cursor is not None else RelayCursor()
        self.fanout_path = fanout
        self.gap_rows = gap_rows
        self.gap_seconds = gap_seconds
        self._pending: collections.deque[LogNotice] = collections.deque()
        self._wake = anyio.Event()
        self.notices = 0
        self.own_notices = 0
        self.reads = 0
        self.relayed = 0
        self.gap_reads = 0
        self.gap_logs = 0

    def listen(self) -> AbstractAsyncContextManager[anyio.Event]:
        return listen(self.url, LOGS_CHANNEL, self._heard_notice)

    def _heard_notice(self, payload: str) -> None:
        try:
            notice = LogNotice.parse(payload)
        except ValueError:
            logger.warning("unexpected log notification: %.100r", payload)
            return
        if notice.process == self.process_id:
            # Pushed by this process's registry already; only the cursor moves, unless
            # others' notices wait before it (a gap read must not skip them).
            self.own_notices += 1
            if not self._pending:
                self.cursor.advance(notice.last)
            return
        self.notices += 1
        self._pending.append(notice)
        self._wake.set()

    async def heard(self, lost: anyio.Event) -> None:
        # Listening has begun: what commits from now on is notified. What was stored
        # before, up to the newest id now, is read here if the relay had listened before.
        async with self.sessionmaker() as db:
            horizon = await LogRepository(db).last_id()
        missed_after = self.cursor.last
        if missed_after is not None and horizon > missed_after:
            await self._read_gap(missed_after)
        self.cursor.advance(horizon)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._relay_notices)
            await lost.wait()
            tg.cancel_scope.cancel()

    async def _read_gap(self, after: int) -> None:
        keys = self.subscriptions.keys()
        self.gap_reads += 1
        if not keys:
            return
        async with self.sessionmaker() as db:
            logs = await LogRepository(db).since(
                after,
                {session for _, session in keys},
                limit=self.gap_rows,
                seconds=self.gap_seconds,
            )
        wanted = _wanted(logs, keys)
        logger.info("read %d logs stored while not listening", len(wanted))
        if wanted:
            self.gap_logs += len(wanted)
            await LogFanoutClient(self.system, self.fanout_path).logs_stored(wanted)

    async def _relay_notices(self) -> None:
        fanout = LogFanoutClient(self.system, self.fanout_path)
        while True:
            if not self._pending:
                self._wake = anyio.Event()
                await self._wake.wait()
            # Every notice waiting goes in one read; they leave the queue only once
            # read, so that a read cut short is done again after the reconnect.
            notices = list(self._pending)
            ranges: list[tuple[int, int]] = []
            taken = 0
            for notice in notices:
                if ranges and len(ranges) + len(notice.ranges) > _RANGES_PER_READ:
                    break
                ranges.extend(notice.ranges)
                taken += 1
            keys = self.subscriptions.keys()
            if keys:
                async with self.sessionmaker() as db:
                    logs = await LogRepository(db).in_ranges(
                        ranges, {session for _, session in keys}
                    )
                self.reads += 1
                wanted = _wanted(logs, keys)
                if wanted:
                    self.relayed += len(wanted)
                    await fanout.logs_stored(wanted)
            for _ in range(taken):
                self._pending.popleft()
            self.cursor.advance(max(high for _, high in ranges))


def _wanted(logs: list[LogEntry], keys: set[tuple[uuid.UUID, uuid.UUID]]) -> list[LogEntry]:
    return [log for log in logs if (log.creator_id, log.session_id) in keys]


def log_relay_spec(
    url: str | URL,
    sessionmaker: async_sessionmaker[AsyncSession],
    process_id: uuid.UUID,
    subscriptions: Subscriptions,
    *,
    name: str = "logrelay",
    fanout: str = "fanout",
    gap_rows: int = GAP_ROWS,
    gap_seconds: float = GAP_SECONDS,
) -> ChildSpec:
    """Return the child spec of the permanent `LogRelay`; start it after the fan-out and
    give it the fan-out's `Subscriptions` (see `log_fanout_spec`)."""
    cursor = RelayCursor()
    return ChildSpec(
        name,
        functools.partial(
            LogRelay,
            url,
            sessionmaker,
            process_id,
            subscriptions,
            cursor,
            fanout=fanout,
            gap_rows=gap_rows,
            gap_seconds=gap_seconds,
        ),
        restart=Restart.PERMANENT,
        shutdown=2.0,
    )
