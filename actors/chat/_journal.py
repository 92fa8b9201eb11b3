"""The turn journal of one conversation: its events, numbered, and what is not stored yet.

Pure bookkeeping, no I/O. The chat actor numbers every event of its conversation here
(``seq``, per conversation, from 1 and without gaps), sends it to the watching sockets
at once, and stores it later: the statements a turn makes anyway carry what is pending
(`TurnJournal.take`), so a turn that runs quickly stores its events in no round trip of
their own; what waits longer is flushed by a task of the actor. A statement that fails
gives its batch back (`TurnJournal.give_back`), ahead of what came meanwhile.

The journal also keeps the last events in memory, so a socket that reconnects to a live
conversation is replayed what the database has not stored yet.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from persistence import TurnRowWrite, TurnStatus, TurnWrites, utcnow

from ._frames import compact_json as _encode

__all__ = [
    "FINAL_KINDS",
    "RECENT_EVENTS",
    "TurnEvent",
    "TurnJournal",
    "turn_event_frame",
]

# What a reconnecting socket can be replayed from memory; older events come from the
# database (they are stored long before this many newer ones exist).
RECENT_EVENTS = 512


FINAL_KINDS = frozenset(
    {TurnStatus.ANSWERED, TurnStatus.FAILED, TurnStatus.CANCELLED, TurnStatus.INTERRUPTED}
)


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """One numbered step of a turn; ``data`` is its JSON text (encoded once)."""

    seq: int
    request_id: uuid.UUID
    kind: str
    at: datetime
    data: str


def turn_event_frame(session_id: uuid.UUID, event: TurnEvent) -> str:
    """Render the ``turn_event`` frame of ``event`` as JSON text."""
    head = _encode(
        {
            "type": "turn_event",
            "session_id": str(session_id),
            "request_id": str(event.request_id),
            "seq": event.seq,
            "kind": event.kind,
            "at": event.at.isoformat(),
        }
    )
    # The data is JSON text already: spliced in, not parsed and encoded again.
    return f'{head[:-1]},"data":{event.data}}}'


@dataclass(slots=True)
class _TurnRow:
    status: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    delivered: bool = False


@dataclass(slots=True)
class TurnJournal:
    """The numbering and the unstored writes of one conversation's activation.

    It lives in the chat actor's room, so a crash of the actor loses none of it.
    ``last_seq`` is None until the conversation's last number has been read
    (`know`); events of that time wait, unnumbered, and are numbered then.

    With several processes, the one that runs the conversation's turn numbers its
    events. A process whose turn has to wait for another's gives the numbering up
    (`suspend`) and takes it back once its turn may run (`resume`).
    """

    last_seq: int | None = None
    suspended: bool = False
    """The numbering is given up for another process's turn: events are held."""
    published: int = 0
    """The last number sent to watchers: events go out in order, each once ready."""
    _events: list[TurnEvent] = field(default_factory=list)
    _unready: set[int] = field(default_factory=set)
    _rows: dict[uuid.UUID, _TurnRow] = field(default_factory=dict)
    _held: list[tuple[uuid.UUID, str, str, datetime]] = field(default_factory=list)
    recent: collections.deque[TurnEvent] = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_EVENTS)
    )

    # -- numbering ----------------------------------------------------------------------

    def know(self, last_seq: int) -> list[TurnEvent]:
        """Learn the conversation's last stored number; return the held events, numbered.

        A number learnt while one is known already is ignored: the journal's own is the
        newer (it counts events the database has not stored yet). So is one learnt while
        the numbering is given up: another process is numbering (`resume` takes it back).
        """
        if self.last_seq is not None or self.suspended:
            return []
        self.last_seq = self.published = last_seq
        held, self._held = self._held, []
        return [self._number(*entry) for entry in held]

    def adopt(self, events: Iterable[TurnEvent]) -> list[TurnEvent]:
        """Take the events another process numbered and stored after ours, so that our
        next number follows theirs; return those to publish (in order).

        Only while nothing of ours waits to be published: numbers we handed out already
        are never changed.
        """
        if self.last_seq is None or self.published != self.last_seq:
            return []
        taken = [event for event in events if event.seq > self.last_seq]
        taken.sort(key=lambda event: event.seq)
        for event in taken:
            self.recent.append(event)
            self.last_seq = self.published = event.seq
        return taken

    def suspend(self) -> None:
        """Give the numbering up while another process runs the conversation's turn.

        Events numbered but not sent to watchers yet are held again, unnumbered, in
        their order (they were neither sent nor stored: the statement that carried them
        was refused); new ones are held behind them.
        """
        kept = [event for event in self._events if event.seq <= self.published]
        withdrawn = [event for event in self._events if event.seq > self.published]
        self._events = kept
        while self.recent and self.recent[-1].seq > self.published:
            self.recent.pop()
        self._held[:0] = [(e.request_id, e.kind, e.data, e.at) for e in withdrawn]
        self._unready.clear()
        self.last_seq = None
        self.suspended = True

    def resume(self, events: Iterable[TurnEvent], last_seq: int) -> list[TurnEvent]:
        """Take the numbering back after another process's events: ``events`` (those
        after ours, in any order) and the conversation's ``last_seq``; the held events
        are numbered after them. Returns the other process's events, to publish; ours
        follow through `publishable`.
        """
        self.suspended = False
        taken = sorted(
            (event for event in events if event.seq > self.published), key=lambda e: e.seq
        )
        last_seq = max(last_seq, self.published, *(event.seq for event in taken))
        if [event.seq for event in taken] == list(range(self.published + 1, last_seq + 1)):
            self.recent.extend(taken)
        else:  # a gap (more than one read gives): replays of these come from the database
            self.recent.clear()
        self.last_seq = self.published = last_seq
        held, self._held = self._held, []
        for entry in held:
            self._number(*entry)
        return taken

    def record(
        self,
        request_id: uuid.UUID,
        kind: str,
        data: Mapping[str, Any] | None = None,
        *,
        ready: bool = True,
    ) -> TurnEvent | None:
        """Number one event (None while the numbering is unknown: it is held).

        An event recorded not ``ready`` (its data may still change, `amend`) holds the
        ones after it back from the watchers until it is made `ready`.
        """
        text = _encode(data or {})
        at = utcnow()
        if self.last_seq is None:
            self._held.append((request_id, kind, text, at))
            return None
        event = self._number(request_id, kind, text, at)
        if not ready:
            self._unready.add(event.seq)
        return event

    def ready(self, seq: int) -> None:
        self._unready.discard(seq)

    def amend(self, seq: int, data: Mapping[str, Any]) -> None:
        """Change the data of event ``seq``; it is stored again if it was already."""
        text = _encode(data)
        for index, event in enumerate(self.recent):
            if event.seq == seq:
                amended = TurnEvent(seq, event.request_id, event.kind, event.at, text)
                self.recent[index] = amended
                break
        else:
            return
        for index, event in enumerate(self._events):
            if event.seq == seq:
                self._events[index] = amended
                return
        self._events.append(amended)

    def publishable(self) -> Iterator[TurnEvent]:
        """Yield the events not sent yet, in order, up to the first one not ready; each
        counts as sent once yielded."""
        for event in self.since(self.published):
            if event.seq in self._unready:
                return
            self.published = event.seq
            yield event

    def published_since(self, seq: int) -> Iterator[TurnEvent]:
        """Yield the remembered events after ``seq`` that watchers have been sent."""
        return (event for event in self.since(seq) if event.seq <= self.published)

    def _number(self, request_id: uuid.UUID, kind: str, data: str, at: datetime) -> TurnEvent:
        assert self.last_seq is not None
        self.last_seq += 1
        event = TurnEvent(self.last_seq, request_id, kind, at, data)
        self._events.append(event)
        self.recent.append(event)
        return event

    def since(self, seq: int) -> Iterator[TurnEvent]:
        """Yield the remembered events numbered after ``seq``, in order."""
        recent = self.recent
        if not recent:
            return iter(())
        # Their numbers follow each other: the first one wanted is found by its number,
        # not by a scan (a deque is indexed cheaply near its ends).
        start = max(seq + 1 - recent[0].seq, 0)
        return (recent[index] for index in range(start, len(recent)))

    def oldest_remembered(self) -> int | None:
        """The number of the oldest event in memory (None: none)."""
        return self.recent[0].seq if self.recent else None

    # -- turn rows ---------------------------------------------------------------------

    def turn(self, request_id: uuid.UUID, status: str, *, delivered: bool = False) -> None:
        """Record a turn's new status; its times follow from it."""
        now = utcnow()
        row = self._rows.get(request_id)
        if row is None:
            row = self._rows[request_id] = _TurnRow(status, now)
        row.status = status
        if status == TurnStatus.RUNNING and row.started_at is None:
            row.started_at = now
        if status in FINAL_KINDS:
            row.finished_at = now
            row.delivered = delivered

    def requeue(self, request_id: uuid.UUID) -> None:
        """Record that a turn about to run waits again (`suspend`): queued, not started."""
        row = self._rows.get(request_id)
        if row is None:
            row = self._rows[request_id] = _TurnRow(TurnStatus.QUEUED, utcnow())
        row.status = TurnStatus.QUEUED
        row.started_at = None

    # -- storing -----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Whether anything waits to be stored."""
        return bool(self._events or self._rows)

    def take(self) -> TurnWrites:
        """Hand what waits to a statement (give it back if the statement fails)."""
        events, self._events = self._events, []
        rows, self._rows = self._rows, {}
        return TurnWrites(
            events=[(e.seq, e.request_id, e.kind, e.data, e.at) for e in events],
            turns=[
                TurnRowWrite(rid, r.status, r.created_at, r.started_at, r.finished_at, r.delivered)
                for rid, r in rows.items()
            ],
        )

    def give_back(self, writes: TurnWrites) -> None:
        """Put a failed statement's writes back, ahead of what was recorded since."""
        returned = [
            TurnEvent(seq, rid, kind, at, data) for seq, rid, kind, data, at in writes.events
        ]
        self._events[:0] = returned
        for row in writes.turns:
            newer = self._rows.get(row.request_id)
            if newer is None:
                self._rows[row.request_id] = _TurnRow(
                    row.status, row.created_at, row.started_at, row.finished_at, row.delivered
                )
            else:  # keep the newer status, with the older row's first times
                newer.created_at = row.created_at
                newer.started_at = newer.started_at or row.started_at

    def drop(self, request_ids: Iterable[uuid.UUID]) -> None:
        """Forget what waits for these turns (their conversation is not the user's)."""
        dropped = set(request_ids)
        self._events = [e for e in self._events if e.request_id not in dropped]
        for request_id in dropped:
            self._rows.pop(request_id, None)
