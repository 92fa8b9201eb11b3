"""LogFanout: push live ``agent_log`` frames to the sockets of the log's owner."""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from runtime import Actor, ActorRef, ChildSpec, MailboxFullError, Restart

if TYPE_CHECKING:
    from persistence import LogEntry
    from runtime import ActorSystem

    from ._outbox import SocketOutbox

__all__ = [
    "LogFanout",
    "LogFanoutClient",
    "LogSink",
    "LogsStored",
    "SubscribeLogs",
    "Subscriptions",
    "UnsubscribeLogs",
    "log_fanout_spec",
    "log_frame",
]

# The fan-out only moves frames to in-memory outboxes, so its mailbox drains fast; the
# registry waits for room rather than lose a live log.
_CAPACITY = 10_000


class LogSink(Protocol):
    """Where the registry reports the log lines it has just stored."""

    async def logs_stored(self, logs: Sequence[LogEntry]) -> None:
        """Take stored logs for delivery; waits only for room in a mailbox."""
        ...


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscribeLogs:
    """Send the logs of ``user_id``'s ``session_id`` to ``outbox``."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    outbox: SocketOutbox


@dataclass(frozen=True, slots=True)
class UnsubscribeLogs:
    """Stop sending logs to ``outbox``."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    outbox: SocketOutbox


@dataclass(frozen=True, slots=True)
class LogsStored:
    """These log lines were stored; push them to their owners' sockets."""

    logs: tuple[LogEntry, ...]


FanoutMessage = SubscribeLogs | UnsubscribeLogs | LogsStored


# -- pure helpers -----------------------------------------------------------------------


def _timestamp(value: datetime) -> str:
    return value.replace(tzinfo=None).isoformat(timespec="microseconds")


def log_frame(log: LogEntry) -> str:
    """Render the ``agent_log`` frame of one stored log (ENDPOINTS.md §9)."""
    body: dict[str, Any] = {
        "type": "agent_log",
        "log": {
            "session_id": str(log.session_id),
            "request_id": str(log.request_id),
            "log_level": log.log_level,
            "message": log.message,
            "creator_id": str(log.creator_id) if log.creator_id is not None else None,
            "agent_id": log.agent_id,
            "created_at": _timestamp(log.created_at),
            "updated_at": _timestamp(log.updated_at),
        },
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


_Key = tuple[uuid.UUID, uuid.UUID]


# Ids of pushed logs remembered, so that none reaches a socket twice (a log read again
# after a listener's outage, or notified twice by a batch stored twice around a lost
# commit answer). Far more than a gap's read (`actors.fanout._relay`) brings.
_PUSHED_WINDOW = 50_000


class Subscriptions:
    """Who listens to which (owner, session), and which logs were pushed lately; no I/O.

    It lives outside the `LogFanout` instance, as a chat actor's `Room` does: the sockets
    subscribe once, so a fan-out restarted after a crash must still know them. The log
    relay of the process reads it too, to fetch only the logs someone here waits for.

    Args:
        window: How many of the last pushed logs' ids to remember.
    """

    def __init__(self, window: int = _PUSHED_WINDOW) -> None:
        self._outboxes: dict[_Key, list[SocketOutbox]] = {}
        self._pushed: set[int] = set()
        self._order: collections.deque[int] = collections.deque()
        self._window = window

    def first_push(self, log_id: int) -> bool:
        """Note that log ``log_id`` is being pushed; False if it was already."""
        if log_id in self._pushed:
            return False
        self._pushed.add(log_id)
        self._order.append(log_id)
        if len(self._order) > self._window:
            self._pushed.discard(self._order.popleft())
        return True

    def keys(self) -> set[_Key]:
        """Every (owner, session) with a socket subscribed (closed ones included until
        the next log prunes them)."""
        return set(self._outboxes)

    def add(self, key: _Key, outbox: SocketOutbox) -> None:
        found = self._outboxes.setdefault(key, [])
        if outbox not in found:
            found.append(outbox)

    def remove(self, key: _Key, outbox: SocketOutbox) -> None:
        found = self._outboxes.get(key)
        if found is None:
            return
        if outbox in found:
            found.remove(outbox)
        if not found:
            del self._outboxes[key]

    def targets(self, key: _Key) -> list[SocketOutbox]:
        found = self._outboxes.get(key)
        if not found:
            return []
        live = [outbox for outbox in found if not outbox.closed]
        if len(live) != len(found):
            if live:
                self._outboxes[key] = live
            else:
                del self._outboxes[key]
        return live

    def __len__(self) -> int:
        return sum(len(found) for found in self._outboxes.values())


# -- the actor --------------------------------------------------------------------------


class LogFanout(Actor[FanoutMessage]):
    """Route each stored log to the sockets its owner has open on its session.

    A log goes to the outboxes subscribed under (``log.creator_id``, ``log.session_id``)
    and to no one else; a log without an owner goes nowhere. Logs come from this
    process's registry and from its log relay (those other processes stored); a log
    already pushed (same id) is not pushed again. A full outbox closes itself
    (its socket is too slow), it never holds the fan-out up.

    Args:
        subscriptions: The subscribed sockets, shared with the instances restarted after
            a crash, so that a restart is invisible to the sockets (a new table if None).
        observe: Also told every stored log with an owner (the turns' log events).
    """

    def __init__(
        self,
        subscriptions: Subscriptions | None = None,
        observe: Callable[[LogEntry], None] | None = None,
    ) -> None:
        self._table = subscriptions if subscriptions is not None else Subscriptions()
        self._observe = observe
        self.delivered = 0

    async def handle(self, message: FanoutMessage) -> Any:
        match message:
            case SubscribeLogs(user_id, session_id, outbox):
                self._table.add((user_id, session_id), outbox)
            case UnsubscribeLogs(user_id, session_id, outbox):
                self._table.remove((user_id, session_id), outbox)
            case LogsStored(logs):
                for log in logs:
                    self._push(log)
        return None

    def _push(self, log: LogEntry) -> None:
        if log.creator_id is None:
            return
        targets = self._table.targets((log.creator_id, log.session_id))
        if targets and not self._table.first_push(log.id):
            return
        if self._observe is not None:
            self._observe(log)
        if not targets:
            return
        text = log_frame(log)
        for outbox in targets:
            if outbox.send_nowait(text):
                self.delivered += 1


def log_fanout_spec(
    name: str = "fanout",
    *,
    observe: Callable[[LogEntry], None] | None = None,
    subscriptions: Subscriptions | None = None,
) -> ChildSpec:
    """Return the child spec of the permanent `LogFanout` actor.

    Every instance the spec starts shares one `Subscriptions` (``subscriptions``, or a
    new one), so the sockets subscribed before a crash go on receiving logs after the
    restart. Give the same one to the process's `log_relay_spec`.
    """
    if subscriptions is None:
        subscriptions = Subscriptions()
    return ChildSpec(
        name,
        functools.partial(LogFanout, subscriptions, observe),
        restart=Restart.PERMANENT,
        capacity=_CAPACITY,
    )


class LogFanoutClient:
    """Typed access to the `LogFanout` at ``path``; implements `LogSink`.

    Args:
        system: The actor system that runs the fan-out.
        path: Its registry path.
    """

    def __init__(self, system: ActorSystem, path: str = "fanout") -> None:
        self._system = system
        self._path = path

    @property
    def ref(self) -> ActorRef[FanoutMessage]:
        """The fan-out's ref (stable across its restarts)."""
        ref: ActorRef[FanoutMessage] = self._system.ref_of(self._path)
        return ref

    async def logs_stored(self, logs: Sequence[LogEntry]) -> None:
        """Push ``logs`` to their owners' sockets; waits only for mailbox room."""
        if logs:
            await self.ref.tell(LogsStored(tuple(logs)))

    async def subscribe(
        self, user_id: uuid.UUID, session_id: uuid.UUID, outbox: SocketOutbox
    ) -> None:
        """Send ``user_id``'s logs of ``session_id`` to ``outbox`` from now on.

        Waits until the fan-out has registered it.
        """
        await self.ref.ask(SubscribeLogs(user_id, session_id, outbox))

    def unsubscribe_nowait(
        self, user_id: uuid.UUID, session_id: uuid.UUID, outbox: SocketOutbox
    ) -> None:
        """Forget ``outbox`` (does not wait; a closed outbox is dropped anyway)."""
        # A closed outbox is pruned on the next log anyway, so a full mailbox or a
        # stopped fan-out loses nothing here.
        with contextlib.suppress(MailboxFullError, KeyError):
            self.ref.tell_nowait(UnsubscribeLogs(user_id, session_id, outbox))
