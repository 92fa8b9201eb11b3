"""TurnRelay: replies of turns that other processes answered, to this process's sockets.

With several server processes, the sockets of one conversation may be on several of
them, and a turn runs in the process whose socket took its message. When a turn ends,
PostgreSQL notifies ``genai_turns`` with its ids (`persistence.TURNS_CHANNEL`). This
relay hears the other processes' notices and, for a conversation that has open sockets
here, reads the reply once and sends it to them (it then counts as delivered). Its own
process's notices are skipped: its chat actors answered their sockets themselves.

A relay that was not listening (its connection lost, the database cut) reads back, on
reconnecting, the turns other processes ended meanwhile in the conversations it has
sockets on (by ``finished_at``, from a little before the loss and at most ``GAP_SECONDS``
back), as if their notices had come; a reply it sent already is not sent again.

A notice also wakes a turn here that waits for the conversation's running turn (one
turn at a time per conversation, whichever process runs it).

A cancel asked on another process for a turn that runs here comes the same way
(``cancel:<process>:<user>:<session>:<request>``, `TurnHistory.ask_to_cancel`) and is
handed to this process's chat actor, which answers it as cancelled.

So do the agent steps the router sees of other processes' turns: the process that runs
the router hands them on (``step:<request>:<kind>:<data as JSON>``, `TurnDirectory`),
in one statement for all that wait, and the process whose turn it is reports them to
its chat actor. They are events to watch, not state: one that cannot be sent (the
database is down, or too many wait) is dropped, with a log line.
"""

from __future__ import annotations

import collections
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from persistence import TURNS_CHANNEL, ChatTurnStore, is_database_unavailable, listen, utcnow
from runtime import ChildSpec, Restart

from ..catalogue import ChannelWatcher
from ._journal import TurnEvent

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy.engine import URL
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from ._actor import Rooms
    from ._directory import TurnDirectory

__all__ = ["GAP_SECONDS", "CancelAsked", "TurnEnded", "TurnRelay", "turn_relay_spec"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The most events of another process's turn read for the watchers here.
_EVENTS = 1000
#: How far back, in seconds, the turns ended while the listener was down are read at most
#: (a UI cut for longer reloads; its next socket is sent what no socket had anyway).
GAP_SECONDS = 60.0
# Read from this long before the loss was seen: processes' clocks differ a little, and
# what is read twice is sent once.
_GAP_MARGIN = timedelta(seconds=5)
_GAP_TURNS = 1000
# Replies sent here lately, by request id: a notice and a read-back never send one twice.
_REMEMBERED = 10_000
# Steps for other processes that may wait to be sent; beyond, the oldest are dropped.
_STEPS = 10_000
_STEP_PREFIX = "step:"
# PostgreSQL refuses a notice of 8000 bytes or more.
_LONGEST_NOTICE = 7900


@dataclass(frozen=True, slots=True)
class TurnEnded:
    """One ``genai_turns`` notice."""

    process: uuid.UUID | None
    user_id: uuid.UUID
    session_id: uuid.UUID
    request_id: uuid.UUID

    @classmethod
    def parse(cls, payload: str) -> TurnEnded:
        """Read ``<process>:<user>:<session>:<request>`` (process may be empty).

        Raises:
            ValueError: Not such a notice.
        """
        process, user, session, request = payload.split(":")
        return cls(
            uuid.UUID(process) if process else None,
            uuid.UUID(user),
            uuid.UUID(session),
            uuid.UUID(request),
        )


@dataclass(frozen=True, slots=True)
class CancelAsked(TurnEnded):
    """A ``cancel:`` notice: another process asks the one running the turn to cancel it."""

    PREFIX = "cancel:"


Cancel = Callable[[uuid.UUID, uuid.UUID, uuid.UUID], Awaitable[bool]]
"""Cancels a turn of this process: ``(user id, session id, request id)``."""


class _Waiting(collections.deque[T]):
    """A deque its one consumer task can wait on until something is in it."""

    def __init__(self, maxlen: int | None = None) -> None:
        super().__init__(maxlen=maxlen)
        self._added = anyio.Event()

    def add(self, *items: T) -> None:
        """Append ``items`` (never waits) and wake the consumer."""
        self.extend(items)
        self._added.set()

    async def wait(self) -> None:
        """Return once the deque holds something."""
        if not self:
            self._added = anyio.Event()
            await self._added.wait()


class TurnRelay(ChannelWatcher):
    """Send the replies of turns other processes ended to the sockets open here.

    Args:
        url: The database (the listening connection).
        sessionmaker: For the reads.
        process_id: This process's identity, as its chat actors write it on their turns.
        rooms: The process's open conversations (`ChatDeps.rooms`).
        cancel: Cancels a turn this process runs, asked by another (None: not done).
        directory: This process's running turns: it hands on the router's steps of other
            processes' turns, and is told theirs (None: steps do not cross).

    Attributes:
        notices: Notices of other processes heard.
        relayed: Replies sent to sockets here.
    """

    subject = "turns ended by other processes"

    def __init__(
        self,
        url: str | URL,
        sessionmaker: async_sessionmaker[AsyncSession],
        process_id: uuid.UUID,
        rooms: Rooms,
        cancel: Cancel | None = None,
        directory: TurnDirectory | None = None,
    ) -> None:
        super().__init__()
        self._cancel = cancel
        self._directory = directory
        self._steps: _Waiting[str] = _Waiting(maxlen=_STEPS)
        self.url = url
        self.process_id = process_id
        self.rooms = rooms
        self._store = ChatTurnStore(sessionmaker, process_id=process_id)
        self._pending: _Waiting[TurnEnded] = _Waiting()
        self._sent: collections.OrderedDict[uuid.UUID, None] = collections.OrderedDict()
        self._lost_at: datetime | None = None
        self.notices = 0
        self.relayed = 0
        self.gap_reads = 0

    async def on_start(self) -> None:
        await super().on_start()
        if self._directory is not None:
            self._directory.forward_to(self._forward)
            self.start_soon(self._send_steps, name=f"{self.name} steps")

    async def on_stop(self) -> None:
        if self._directory is not None:
            self._directory.forward_to(None)
        await super().on_stop()

    def listen(self) -> AbstractAsyncContextManager[anyio.Event]:
        return listen(self.url, TURNS_CHANNEL, self._heard_notice)

    def _forward(self, request_id: str, kind: str, data: Mapping[str, Any]) -> None:
        """Queue a step of a turn no turn here runs, for the other processes."""
        notice = f"{_STEP_PREFIX}{request_id}:{kind}:{json.dumps(data, separators=(',', ':'))}"
        if len(notice.encode()) > _LONGEST_NOTICE:
            logger.info("a %s step of %s is too long to hand on", kind, request_id)
            return
        if len(self._steps) == self._steps.maxlen:
            logger.warning("agent steps for other processes dropped: too many wait")
        self._steps.add(notice)

    async def _send_steps(self) -> None:
        while True:
            await self._steps.wait()
            notices = list(self._steps)
            self._steps.clear()
            try:
                async with self._store.connect() as db:
                    await db.notify(TURNS_CHANNEL, notices)
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                logger.warning("%d agent steps not handed on: %r", len(notices), exc)

    def _heard_step(self, payload: str) -> None:
        if self._directory is None:
            return
        try:
            request_id, kind, data = payload.removeprefix(_STEP_PREFIX).split(":", 2)
            uuid.UUID(request_id)
            step = json.loads(data)
        except ValueError:
            logger.warning("unexpected step notification: %.100r", payload)
            return
        if isinstance(step, dict):
            self._directory.report(request_id, kind, step)

    def _heard_notice(self, payload: str) -> None:
        if payload.startswith(_STEP_PREFIX):
            self._heard_step(payload)
            return
        asked = payload.startswith(CancelAsked.PREFIX)
        try:
            if asked:
                notice: TurnEnded = CancelAsked.parse(payload.removeprefix(CancelAsked.PREFIX))
            else:
                notice = TurnEnded.parse(payload)
        except ValueError:
            logger.warning("unexpected turn notification: %.100r", payload)
            return
        if asked:
            if notice.process == self.process_id and self._cancel is not None:
                self._pending.add(notice)
            return
        if notice.process == self.process_id:
            return
        self.notices += 1
        # Only conversations with sockets here are read at all.
        room = self.rooms.get((notice.user_id, notice.session_id))
        if room is not None:
            if room.turn_ended is not None:
                room.turn_ended.set()  # a turn here waits for the conversation
            self._pending.add(notice)

    async def heard(self, lost: anyio.Event) -> None:
        # Listening has begun: a turn that ends from now on is notified; one that ended
        # while the listener was down is read back.
        if self._lost_at is not None:
            await self._read_gap(self._lost_at)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._relay)
                await lost.wait()
                tg.cancel_scope.cancel()
        finally:
            self._lost_at = utcnow()

    async def _read_gap(self, lost_at: datetime) -> None:
        keys = set(self.rooms.with_sockets())
        self.gap_reads += 1
        if not keys:
            return
        since = max(lost_at - _GAP_MARGIN, utcnow() - timedelta(seconds=GAP_SECONDS))
        async with self._store.connect() as db:
            ended = await db.ended_since(
                sorted({session for _, session in keys}),
                since=since,
                process_id=self.process_id,
                limit=_GAP_TURNS,
            )
        missed = [TurnEnded(*row) for row in ended if (row[1], row[2]) in keys]
        logger.info("read %d turns ended while not listening", len(missed))
        if missed:
            self._pending.add(*missed)

    async def _relay(self) -> None:
        while True:
            await self._pending.wait()
            notice = self._pending[0]
            try:
                if isinstance(notice, CancelAsked):
                    await self._cancel_here(notice)
                else:
                    await self._send(notice)
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                logger.warning("a reply for other sockets is not sent: %r", exc)
            self._pending.popleft()

    async def _cancel_here(self, notice: CancelAsked) -> None:
        assert self._cancel is not None
        cancelled = await self._cancel(notice.user_id, notice.session_id, notice.request_id)
        logger.info("turn %s cancelled as another process asked: %s", notice.request_id, cancelled)

    async def _send(self, notice: TurnEnded) -> None:
        room = self.rooms.get((notice.user_id, notice.session_id))
        if room is None or not room.live() or notice.request_id in self._sent:
            return
        known = room.last_seq
        async with self._store.connect() as db:
            reply = await db.reply_of(
                notice.session_id, owner_id=notice.user_id, request_id=notice.request_id
            )
            # The other process's events: watchers here get them, and this room's
            # numbering moves past them. Replies no socket had come along; ours now.
            found = await db.attach(
                notice.session_id, owner_id=notice.user_id, after_seq=known, limit=_EVENTS
            )
        # The events first, as the turn's own process sends them: a watcher's record of
        # the turn is whole once its reply arrives.
        events = [TurnEvent(seq, rid, kind, at, data) for seq, rid, kind, data, at in found.events]
        room.adopt(notice.session_id, events, found.last_seq)
        live = room.live()
        frames = [(notice.request_id, reply)] if reply is not None else []
        frames += [(rid, frame) for rid, frame in found.undelivered if rid != notice.request_id]
        for request_id, frame in frames:
            # Another turn's reply may have come along with an earlier one's read.
            if request_id in self._sent:
                continue
            for outbox in live:
                outbox.send_nowait(frame)
            self.relayed += 1
            self._sent[request_id] = None
            if len(self._sent) > _REMEMBERED:
                self._sent.popitem(last=False)


def turn_relay_spec(
    url: str | URL,
    sessionmaker: async_sessionmaker[AsyncSession],
    process_id: uuid.UUID,
    rooms: Rooms,
    *,
    cancel: Cancel | None = None,
    directory: TurnDirectory | None = None,
    name: str = "turnrelay",
) -> ChildSpec:
    """Return the child spec of the permanent `TurnRelay` (it waits out outages itself)."""
    return ChildSpec(
        name,
        lambda: TurnRelay(url, sessionmaker, process_id, rooms, cancel, directory),
        restart=Restart.PERMANENT,
    )
