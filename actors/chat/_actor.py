"""ChatActor: one front-end conversation of one user; runs its turns one at a time.

The actor only decides; the work that waits on the outside (the database, the master)
runs in tasks it owns and comes back as messages, so the mailbox keeps serving sockets
that subscribe or leave while a turn waits. A turn goes::

    PostMessage ─▶ task: look-up, stamps, user message ─▶ _Prepared
    _Prepared ─▶ invoke the master (reply_to = this actor)
    MasterReplied | Down(router session) | _Expired (server stop)
        ─▶ task: store the reply, send the frame ─▶ _Answered ─▶ next queued message

A message posted while a turn runs is stashed and handled once it is answered; the
runtime keeps stashed messages across a restart, so a crash loses none.

Every step of a turn is an event of the conversation's `TurnJournal` (accepted, started,
master invoked, what agents did, the reply), numbered and sent at once to the sockets
that watch (``events=1``), and stored on the way by the turn's own statements, or by a
flush of the actor's own when none comes within `_FLUSH_DELAY`. A socket that joins is sent
the replies no socket received, and, if it asks, the events after a number it saw.
A turn can be cancelled (`CancelTurn`), running or queued.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio

from persistence import (
    ApiKeyDecryptionError,
    ChatTurnStore,
    FileRepository,
    NotFoundError,
    SessionAttachment,
    TurnConflictError,
    TurnLookup,
    TurnStatements,
    TurnStatus,
    TurnWrites,
    is_database_unavailable,
)
from runtime import Actor, Down, MailboxFullError

from ..session import (
    MasterAgentError,
    MasterNotActiveError,
    MasterReplied,
    MasterTimeoutError,
    RouterUnavailableError,
)
from ._context import turn_context
from ._directory import TurnStep
from ._drain import SHUTTING_DOWN
from ._exceptions import ChatBusyError, ChatStoppingError
from ._frames import (
    CANCELLED,
    CHAT_NOT_FOUND,
    CONFIG_NOT_FOUND,
    DATABASE_UNAVAILABLE,
    DECRYPT_FAILED,
    PROVIDER_NOT_FOUND,
    UNEXPECTED,
    ChatInput,
    Reply,
    agent_response_body,
    compact_json,
    configs_for,
    error_reply,
    file_dto,
    is_ollama,
    master_payload,
    reply_from_master,
    stored_content,
    title_for,
)
from ._journal import TurnEvent, TurnJournal, turn_event_frame

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from actors.fanout import SocketOutbox
    from persistence import File
    from runtime import ActorRef

    from ..session import MasterReply
    from ._directory import TurnDirectory
    from ._drain import ChatDrain
    from ._ports import ApiKeyDecrypter, MasterInvoker

__all__ = [
    "DEFAULT_MASTER_TIMEOUT",
    "CancelOutcome",
    "CancelTurn",
    "ChatActor",
    "ChatDeps",
    "ChatMessage",
    "PostMessage",
    "Room",
    "Rooms",
    "Subscribe",
    "TurnObserver",
    "Unsubscribe",
]

logger = logging.getLogger(__name__)

DEFAULT_MASTER_TIMEOUT = 300.0
# A turn the actor stops under (a crash) is answered within this, stored if possible.
_STOP_ANSWER_SECONDS = 1.0
# Events wait this long for a statement of their turn to carry them before a flush of
# their own stores them: a turn shorter than this (most, even on a busy server) stores
# its events in no round trip of their own. It is also what a server killed outright
# may lose of them (the turn itself is answered as interrupted).
_FLUSH_DELAY = 1.0
# While the database cannot take them, flushes are tried again with a doubling pause
# from the first to the second, and given up (logged) after this many attempts, so the
# actor can passivate.
_FLUSH_RETRY = 0.1
_FLUSH_MAX_PAUSE = 5.0
_FLUSH_ATTEMPTS = 30
# Events a joining socket is replayed from the database per read.
_REPLAY_PAGE = 1000
# A turn held back by another process's turn of its conversation tries again when that
# one ends (a notice), or after this pause, doubling up to the second (a missed notice).
_WAIT_FIRST_PAUSE = 0.25
_WAIT_MAX_PAUSE = 5.0

TurnObserver = Callable[[str, float], None]
"""Told how each master invocation ended (``ok``, ``not_active``, ``failed``,
``deadline`` or ``router``) and how long it took, in seconds."""


@dataclass(frozen=True, slots=True)
class ChatDeps:
    """What every chat actor is given.

    Attributes:
        sessionmaker: Opens one database session per unit of work.
        master: Invokes the master agent (the router session's client).
        cipher: Decrypts provider API keys; None refuses every stored key.
        master_timeout: Deadline of one master invocation, in seconds
            (setting ``MASTER_AGENT_TIMEOUT``); the invoker owns it.
        files_dir: Where uploaded files live; a reply lists only files present there.
            None lists every file of the request.
        clock: Wall-clock seconds, for the payload's ``timestamp``.
        drain: The server's stop: admits messages and cuts the master wait of a turn
            short at its deadline. None: turns are never cut.
        observe: Told the outcome and duration of every master invocation (metrics).
        directory: Where running turns register, so that the router and the log fan-out
            can report their steps. None: no agent steps are seen.
        master_kind: ``builtin`` or ``external``: who answers (the ``master_invoked``
            event says it).
        cancel_master_turn: Stops the built-in master's work on a request (None: the
            master cannot be told, as the external one cannot).
        process_id: This server process, written on the turns it runs.
        rooms: The rooms of the process's open conversations, shared by the sockets
            and the actors (see `Rooms`).
    """

    sessionmaker: async_sessionmaker[AsyncSession]
    master: MasterInvoker
    cipher: ApiKeyDecrypter | None = None
    master_timeout: float = DEFAULT_MASTER_TIMEOUT
    files_dir: Path | None = None
    clock: Callable[[], float] = field(default=time.time)
    drain: ChatDrain | None = None
    observe: TurnObserver | None = None
    directory: TurnDirectory | None = None
    master_kind: str = "external"
    cancel_master_turn: Callable[[str], None] | None = None
    process_id: uuid.UUID | None = None
    rooms: Rooms = field(default_factory=lambda: Rooms())


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostMessage:
    """Run one turn for this message and answer every subscribed socket.

    Post it through `Room.admit` first (`ChatSession.post` does): the room counts it
    until it is answered. ``request_id`` names its turn from the start, so that it can
    be cancelled while it waits.
    """

    input: ChatInput
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Send this session's frames to ``outbox`` from now on (ask: answers the `Room`).

    ``events``: also the ``turn_event`` frames; ``after_seq``: first replay the events
    numbered after it (implies ``events``).
    """

    outbox: SocketOutbox
    events: bool = False
    after_seq: int | None = None


CancelOutcome = str
"""``cancelled`` (the turn is being answered as cancelled), ``unknown`` (no turn of
that id runs or waits here)."""


@dataclass(frozen=True, slots=True)
class CancelTurn:
    """Cancel the running or queued turn ``request_id`` (ask: answers a `CancelOutcome`)."""

    request_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop sending frames to ``outbox``; the last one leaving passivates the actor."""

    outbox: SocketOutbox


@dataclass(frozen=True, slots=True)
class _Prepared:
    """The turn's database step is done: this is the master's payload."""

    request_id: uuid.UUID
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Answered:
    """The turn's frame is sent: the next message may run."""

    request_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class _Expired:
    """The server's stop has reached its deadline: stop waiting for the master."""


@dataclass(frozen=True, slots=True)
class _Attached:
    """A joining socket's read is done (``found`` None: the database failed)."""

    outbox: SocketOutbox
    after_seq: int | None
    found: SessionAttachment | None


@dataclass(frozen=True, slots=True)
class _Flushed:
    """The flush task ended."""


ChatMessage = (
    PostMessage
    | Subscribe
    | Unsubscribe
    | CancelTurn
    | TurnStep
    | MasterReplied
    | Down
    | _Prepared
    | _Answered
    | _Expired
    | _Attached
    | _Flushed
)


# -- state that outlives a crash --------------------------------------------------------


class Room:
    """The sockets and admitted messages of one conversation of this process.

    It lives in `Rooms` from the first socket of the conversation until its last one
    has left and no chat actor runs it: a socket joins it without a chat actor, the
    actor is started for the first message (or a watcher), and the actor's restarts
    and later activations find the same room.

    Args:
        limit: Messages that may be admitted and unanswered at once (the one running
            and those waiting behind it); None: no limit.
        drain: The server's stop, which counts admitted messages too.
    """

    # Most rooms hold one idle socket: no instance dict, and the journal, the answers'
    # memory, the watchers and the queue's bookkeeping are made only when first needed.
    __slots__ = (
        "_answered_to",
        "_cancelled",
        "_catching_up",
        "_drain",
        "_journal",
        "_known_seq",
        "_limit",
        "_outboxes",
        "_queued",
        "_watchers",
        "activating",
        "actor_running",
        "passivating",
        "pending",
        "turn_ended",
    )

    def __init__(self, *, limit: int | None = None, drain: ChatDrain | None = None) -> None:
        self._outboxes: list[SocketOutbox] = []
        self._limit = limit
        self._drain = drain
        self.pending = 0
        """Messages admitted and not answered yet."""
        self._journal: TurnJournal | None = None
        # The conversation's last stored number, read before the journal was made.
        self._known_seq: int | None = None
        self._watchers: dict[SocketOutbox, int] | None = None
        self._catching_up: set[SocketOutbox] | None = None
        self._queued: dict[uuid.UUID, ChatInput] | None = None
        self._cancelled: set[uuid.UUID] | None = None
        self._answered_to: collections.deque[tuple[uuid.UUID, frozenset[int]]] | None = None
        self.actor_running = False
        """A chat actor runs this conversation (from its start to its passivation)."""
        self.activating = 0
        """Activations of a chat actor under way (the room must stay registered)."""
        self.passivating: anyio.Event | None = None
        """Set while the chat actor is passivating; fires once it has stopped."""
        self.turn_ended: anyio.Event | None = None
        """Set while a turn here waits for another process's turn of the conversation;
        fires when a turn of another process ends (`TurnRelay`)."""

    @property
    def watchers(self) -> dict[SocketOutbox, int]:
        """Sockets that get ``turn_event`` frames, with the last number each was sent."""
        if self._watchers is None:
            self._watchers = {}
        return self._watchers

    @property
    def catching_up(self) -> set[SocketOutbox]:
        """Watchers being replayed what they missed: live events wait for them."""
        if self._catching_up is None:
            self._catching_up = set()
        return self._catching_up

    @property
    def queued(self) -> dict[uuid.UUID, ChatInput]:
        """Requests announced as queued behind a running turn, and their messages."""
        if self._queued is None:
            self._queued = {}
        return self._queued

    @property
    def cancelled(self) -> set[uuid.UUID]:
        """Queued requests answered as cancelled: skipped when their turn comes."""
        if self._cancelled is None:
            self._cancelled = set()
        return self._cancelled

    @property
    def journal(self) -> TurnJournal:
        """The conversation's events and what of them is not stored yet."""
        journal = self._journal
        if journal is None:
            journal = self._journal = TurnJournal()
            if self._known_seq is not None:
                journal.know(self._known_seq)
        return journal

    def know(self, last_seq: int, session_id: uuid.UUID) -> None:
        """Learn the conversation's last stored event number (see `TurnJournal.know`)
        and send the events that it makes ready."""
        if self._journal is None:
            if self._known_seq is None:
                self._known_seq = last_seq
            return
        self._journal.know(last_seq)
        self.publish_ready(session_id)

    @property
    def answered_to(self) -> Sequence[tuple[uuid.UUID, frozenset[int]]]:
        """The last turns answered, with the sockets (``id()``) their frame went to."""
        return self._answered_to if self._answered_to is not None else ()

    def answered(self, request_id: uuid.UUID, outboxes: Sequence[SocketOutbox]) -> None:
        """Remember that the reply to ``request_id`` went to ``outboxes``."""
        if self._answered_to is None:
            self._answered_to = collections.deque(maxlen=32)
        self._answered_to.append((request_id, frozenset(id(outbox) for outbox in outboxes)))

    @property
    def idle(self) -> bool:
        """Whether nothing holds the room: no open socket, message or chat actor."""
        return (
            not self.live() and not self.pending and not self.actor_running and not self.activating
        )

    def add(self, outbox: SocketOutbox) -> None:
        if outbox not in self._outboxes:
            self._outboxes.append(outbox)

    def remove(self, outbox: SocketOutbox) -> None:
        if outbox in self._outboxes:
            self._outboxes.remove(outbox)
        if self._watchers is not None:
            self._watchers.pop(outbox, None)
        if self._catching_up is not None:
            self._catching_up.discard(outbox)

    def live(self) -> list[SocketOutbox]:
        """Return the open outboxes, forgetting the closed ones."""
        if any(outbox.closed for outbox in self._outboxes):
            self._outboxes = [outbox for outbox in self._outboxes if not outbox.closed]
            for gone in [outbox for outbox in self._watchers or () if outbox.closed]:
                self.remove(gone)
        return list(self._outboxes)

    def broadcast(self, text: str) -> None:
        """Queue ``text`` on every open outbox; a full one closes itself. Never waits."""
        for outbox in self.live():
            outbox.send_nowait(text)

    @property
    def last_seq(self) -> int | None:
        """The conversation's last number this room knows (None: not known)."""
        return self._journal.last_seq if self._journal is not None else self._known_seq

    def adopt(self, session_id: uuid.UUID, events: Iterable[TurnEvent], last_seq: int) -> None:
        """Take the events another process stored for this conversation: watchers here
        are sent them, and this room's next number follows theirs."""
        if self._journal is None:
            if self._known_seq is not None:
                self._known_seq = max(self._known_seq, last_seq)
            return
        self._send_watchers(session_id, self._journal.adopt(events))

    def resume(self, session_id: uuid.UUID, events: Iterable[TurnEvent], last_seq: int) -> None:
        """Take the numbering back after another process's turn (`TurnJournal.resume`):
        watchers are sent its events, then ours that waited."""
        self._send_watchers(session_id, self.journal.resume(events, last_seq))
        self.publish_ready(session_id)

    def _send_watchers(self, session_id: uuid.UUID, events: Iterable[TurnEvent]) -> None:
        """Send ``events`` to the watchers not being replayed; every event is taken from
        ``events`` (they count as sent), watchers or not."""
        for event in events:
            if not self._watchers:
                continue
            frame = turn_event_frame(session_id, event)
            for outbox, last in self.watchers.items():
                if outbox not in self.catching_up and event.seq > last:
                    outbox.send_nowait(frame)
                    self.watchers[outbox] = event.seq

    def publish_ready(self, session_id: uuid.UUID) -> None:
        """Send the journal's events that are ready, in order, to the watchers that are
        not being replayed. Never waits."""
        self._send_watchers(session_id, self.journal.publishable())

    def admit(self) -> None:
        """Count one more message to answer (does not wait).

        Raises:
            ChatStoppingError: The server's stop has begun.
            ChatBusyError: As many messages as the limit allows wait already.
        """
        drain = self._drain
        if drain is not None and drain.draining:
            raise ChatStoppingError("the server is stopping")
        if self._limit is not None and self.pending >= self._limit:
            raise ChatBusyError(f"{self.pending} messages are waiting")
        self.pending += 1
        if drain is not None:
            drain.admit()

    def settle(self) -> None:
        """Count one admitted message as answered (once per `admit`)."""
        self.pending -= 1
        if self._drain is not None:
            self._drain.settle()


class Rooms:
    """The `Room` of every conversation of this process with a socket or a chat actor,
    by ``(user id, session id)``."""

    def __init__(self) -> None:
        self._rooms: dict[tuple[uuid.UUID, uuid.UUID], Room] = {}

    def __len__(self) -> int:
        return len(self._rooms)

    def get(self, key: tuple[uuid.UUID, uuid.UUID]) -> Room | None:
        """Return the registered room of ``key``, if any."""
        return self._rooms.get(key)

    def with_sockets(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """Return the keys of the rooms that have an open socket."""
        return [key for key, room in self._rooms.items() if room.live()]

    def setdefault(self, key: tuple[uuid.UUID, uuid.UUID], make: Callable[[], Room]) -> Room:
        """Return the room of ``key``, registering ``make()`` if there is none."""
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = make()
        return room

    def release(self, key: tuple[uuid.UUID, uuid.UUID], room: Room) -> None:
        """Forget ``room`` if it is still the one of ``key`` and nothing holds it."""
        if self._rooms.get(key) is room and room.idle:
            del self._rooms[key]


@dataclass(frozen=True, slots=True)
class _Ended:
    """How a turn that waited for another ended without running: the reply to answer it
    with, or the reply frame (JSON text) another process stored for it."""

    reply: Reply | None = None
    status: TurnStatus | None = None
    frame: str | None = None


@dataclass(slots=True)
class _Turn:
    request_id: uuid.UUID
    input: ChatInput
    user_stored: bool = False
    # perf_counter() when the master was invoked; None unless waiting for its reply.
    invoked_at: float | None = None
    answered: bool = False
    # Cancelled before the master was invoked: answered so once its step is done.
    cancel_requested: bool = False
    # A queued turn cancelled before it ran: its message is stored with the reply.
    store_message: bool = False
    # Its final event is recorded (the answer is being stored).
    finishing: bool = False
    # Its accepted and started events: sent to watchers once the look-up has found that
    # no other process runs a turn of the conversation (until then, not ready).
    unready: tuple[int, ...] = ()
    # Set while it waits for another process's turn: cancel and the stop wake it.
    wake: anyio.Event | None = None


# -- the actor --------------------------------------------------------------------------


class ChatActor(Actor[ChatMessage]):
    """The conversation ``session_id`` of user ``user_id``.

    Turns run one at a time and in order: a message posted while a turn runs waits (the
    room's limit bounds how many may). Every message ends in exactly one
    ``agent_response`` frame to every subscribed socket, errors included (ENDPOINTS.md
    §9, Q4, Q5). A database that cannot be reached answers the turn with
    `DATABASE_UNAVAILABLE`, and a router session that goes down while a turn waits
    for it answers `ROUTER_UNAVAILABLE` at once (it is watched); neither is a crash.
    An unexpected exception still answers the turn with ``Unexpected error occured.
    Try again later`` and then crashes the actor, which its supervisor restarts with
    the same room. When the last socket has left, nothing is pending and every event is
    stored, the actor stops (passivation).

    Args:
        user_id: The owner.
        session_id: The conversation id.
        deps: Database, master invoker, cipher and settings.
        room: The subscribed sockets, pending messages and the turn journal, shared
            with the instances restarted after a crash.
    """

    def __init__(
        self, user_id: uuid.UUID, session_id: uuid.UUID, deps: ChatDeps, room: Room
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.deps = deps
        self.room = room
        self._store = ChatTurnStore(deps.sessionmaker, process_id=deps.process_id)
        self._turn: _Turn | None = None
        # The stored provider key of the last turn that reached the master (in a tuple:
        # it may be None); a message whose config still has it needs no separate store.
        self._usable_key: tuple[str | None] | None = None
        # Set when something waits to be stored; the flusher task waits for it.
        self._flush_wanted = anyio.Event()
        self._storing = False
        # Requests cancelled while an external master works on them: its late answer
        # is kept as an event, not sent.
        self._abandoned: set[str] = set()
        # A look-up has found the conversation to be the user's (or created it).
        self._owned = False
        # Stopping by itself, its room left idle (not a crash: a restart would follow).
        self._passivating = False

    async def on_start(self) -> None:
        self.room.actor_running = True
        self.room.passivating = None
        master = self.deps.master.ref
        if master is not None:
            self.watch(master)
        if self.deps.drain is not None:
            self.deps.drain.on_expiry(self, self._expire)
        self.start_soon(self._flusher, name=f"{self.name} flush")
        if self.room.journal.pending or self.room.journal.last_seq is None:
            self._schedule_flush()

    async def on_stop(self) -> None:
        try:
            await self._stop()
        finally:
            if self._passivating:
                room = self.room
                room.actor_running = False
                self.deps.rooms.release((self.user_id, self.session_id), room)
                if room.passivating is not None:
                    room.passivating.set()

    async def _stop(self) -> None:
        if self.deps.drain is not None:
            self.deps.drain.forget(self)
        if self.room.journal.pending and self._turn is None:
            # What the flusher had not stored yet (a server that stops, mostly).
            with anyio.move_on_after(_STOP_ANSWER_SECONDS):
                await self._flush_now(attempts=1)
        master = self.deps.master.ref
        if master is not None:
            self.unwatch(master)
        turn = self._turn
        if turn is None or turn.answered:
            return
        # Stopped (a crash, or the server's last moments) with its turn unanswered.
        if turn.invoked_at is not None:
            self._stop_master(turn)
        drain = self.deps.drain
        text = SHUTTING_DOWN if drain is not None and drain.draining else UNEXPECTED
        with (
            turn_context(self.session_id, turn.request_id),
            anyio.move_on_after(_STOP_ANSWER_SECONDS),
        ):
            try:
                await self._finish(turn, error_reply(text))
            except Exception:
                logger.exception("storing the answer of a turn cut by a stop failed")

    async def handle(self, message: ChatMessage) -> Any:
        match message:
            case PostMessage(chat_input, request_id):
                self._post(chat_input, request_id)
            case MasterReplied(request_id, outcome):
                turn = self._waiting(request_id)
                if turn is not None:
                    with turn_context(self.session_id, turn.request_id):
                        self._answer(turn, self._reply_of(turn, outcome))
                elif request_id in self._abandoned:
                    self._abandoned.discard(request_id)
                    self._late_reply(request_id, outcome)
            case _Prepared(request_id, payload):
                turn = self._turn
                if turn is not None and turn.request_id == request_id and not turn.answered:
                    with turn_context(self.session_id, request_id):
                        if turn.cancel_requested:
                            self._answer(turn, error_reply(CANCELLED), TurnStatus.CANCELLED)
                        else:
                            await self._invoke(turn, payload)
            case _Answered(request_id):
                if self._turn is not None and self._turn.request_id == request_id:
                    if self.deps.directory is not None:
                        self.deps.directory.forget(request_id)
                    self._turn = None
                    self.unstash_all()
                    self._passivate_if_idle()
            case TurnStep(request_id, kind, data):
                turn = self._turn
                # Nothing after its final event: a late log stays in the logs alone.
                if turn is not None and turn.request_id == request_id and not turn.finishing:
                    self._record(request_id, kind, data)
            case CancelTurn(request_id):
                return self._cancel(request_id)
            case Subscribe(outbox, events, after_seq):
                self._subscribe(outbox, events=events, after_seq=after_seq)
                return self.room
            case Unsubscribe(outbox):
                self.room.remove(outbox)
                self._passivate_if_idle()
            case _Attached(outbox, after_seq, found):
                self._attached(outbox, after_seq, found)
            case _Flushed():
                self._passivate_if_idle()
            case Down(ref):
                self._router_down(ref)
            case _Expired():
                self._cut()
        return None

    def _passivate_if_idle(self) -> None:
        if (
            self._turn is None
            and not self.room.pending
            and not self.room.live()
            and not self.room.journal.pending
            and not self._storing
            and self.ref.statistics().depth == 0
        ):
            # A socket that posts from now on waits for this one to stop and starts
            # the next one (a message sent to it now would be lost).
            self._passivating = True
            self.room.passivating = anyio.Event()
            self.stop()

    def _waiting(self, request_id: str) -> _Turn | None:
        """Return the turn waiting for the master's reply to ``request_id``, if any."""
        turn = self._turn
        if turn is None or turn.invoked_at is None or str(turn.request_id) != request_id:
            return None  # a late reply to a turn answered already
        return turn

    # -- events ---------------------------------------------------------------------------

    def _record(
        self, request_id: uuid.UUID, kind: str, data: Mapping[str, Any] | None = None
    ) -> None:
        """Number an event, send it to the watchers, and see that it gets stored."""
        self.room.journal.record(request_id, kind, data)
        self.room.publish_ready(self.session_id)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        self._flush_wanted.set()

    async def _flusher(self) -> None:
        """Store, `_FLUSH_DELAY` after it is asked, what no statement of a turn took
        meanwhile (the actor's task for its whole life)."""
        while True:
            await self._flush_wanted.wait()
            self._flush_wanted = anyio.Event()
            await anyio.sleep(_FLUSH_DELAY)
            if await self._flush_now(attempts=_FLUSH_ATTEMPTS):
                with contextlib.suppress(MailboxFullError):
                    self.ref.tell_nowait(_Flushed())  # a passivation may have waited

    async def _flush_now(self, *, attempts: int) -> bool:
        """Store what waits, learning the numbering first if it is not known; wait out
        a database that is down for ``attempts`` tries. Returns whether it stored."""
        journal = self.room.journal
        pause = _FLUSH_RETRY
        for attempt in range(attempts):
            if not journal.pending and journal.last_seq is not None:
                return False
            self._storing = True
            try:
                if journal.last_seq is None and not journal.suspended:
                    await self._read_attachment(None, None)
                writes = journal.take()
                if writes:
                    try:
                        await self._store_writes(writes)
                    except BaseException:
                        journal.give_back(writes)
                        raise
                return True
            except Exception as exc:
                # A running row whose turn is being answered meanwhile (its look-up
                # failed) conflicts until the answer's statement stores its end.
                if not is_database_unavailable(exc) and not isinstance(exc, TurnConflictError):
                    raise
                if attempt + 1 < attempts:
                    await anyio.sleep(pause)
                    pause = min(pause * 2, _FLUSH_MAX_PAUSE)
            finally:
                self._storing = False
        logger.warning(
            "turn events of session %s not stored: database unavailable", self.session_id
        )
        journal.take()
        return False

    async def _store_writes(self, writes: TurnWrites) -> None:
        async with self._store.connect() as db:
            try:
                await db.store_writes(self.session_id, owner_id=self.user_id, writes=writes)
            except NotFoundError:
                logger.info("turn events dropped: conversation %s is gone", self.session_id)

    def _subscribe(self, outbox: SocketOutbox, *, events: bool, after_seq: int | None) -> None:
        room = self.room
        room.add(outbox)
        if after_seq is not None:
            room.watchers[outbox] = after_seq
            room.catching_up.add(outbox)
        elif events:
            journal = room.journal
            room.watchers[outbox] = (
                journal.published if journal.last_seq is None else journal.last_seq
            )
        self.start_soon(self._read_attachment, outbox, after_seq, name=f"{self.name} join")

    async def _read_attachment(self, outbox: SocketOutbox | None, after_seq: int | None) -> None:
        """Read what a joining socket needs (None: only the numbering) and tell it back."""
        try:
            async with self._store.connect() as db:
                found: SessionAttachment | None = await db.attach(
                    self.session_id,
                    owner_id=self.user_id,
                    after_seq=after_seq,
                    limit=_REPLAY_PAGE,
                )
        except Exception as exc:
            if outbox is None or not is_database_unavailable(exc):
                raise
            logger.warning("a socket joined session %s unreplayed: %r", self.session_id, exc)
            found = None
        if outbox is None:
            assert found is not None
            self.room.journal.know(found.last_seq)
            self.room.publish_ready(self.session_id)
            return
        await self.ref.tell(_Attached(outbox, after_seq, found))

    def _attached(
        self, outbox: SocketOutbox, after_seq: int | None, found: SessionAttachment | None
    ) -> None:
        room = self.room
        if found is not None:
            room.journal.know(found.last_seq)
            room.publish_ready(self.session_id)
            delivered_here = {
                request_id for request_id, sent in room.answered_to if id(outbox) in sent
            }
            for request_id, frame in found.undelivered:
                if request_id not in delivered_here:
                    outbox.send_nowait(frame)
        if outbox not in room.catching_up:
            return
        last = room.watchers.get(outbox, after_seq or 0)
        if found is not None:
            for seq, request_id, kind, data, at in found.events:
                if seq > last:
                    event = TurnEvent(seq, request_id, kind, at, data)
                    outbox.send_nowait(turn_event_frame(self.session_id, event))
                    last = seq
            oldest = room.journal.oldest_remembered()
            if len(found.events) >= _REPLAY_PAGE and (oldest is None or oldest > last + 1):
                # More are stored than one read gives: read on from where this one ended.
                room.watchers[outbox] = last
                self.start_soon(self._read_attachment, outbox, last, name=f"{self.name} join")
                return
        for event in room.journal.published_since(last):
            outbox.send_nowait(turn_event_frame(self.session_id, event))
            last = event.seq
        room.watchers[outbox] = last
        room.catching_up.discard(outbox)

    def _late_reply(self, request_id: str, outcome: MasterReply | MasterAgentError) -> None:
        data: dict[str, Any]
        if isinstance(outcome, MasterAgentError):
            data = {"response": {"response": str(outcome), "is_success": False}}
        else:
            data = {"response": outcome.response}
        logger.info("the master answered cancelled request %s: kept as an event", request_id)
        self._record(uuid.UUID(request_id), "late_reply", data)

    # -- cancelling -----------------------------------------------------------------------

    def _cancel(self, request_id: uuid.UUID) -> CancelOutcome:
        turn = self._turn
        if turn is not None and turn.request_id == request_id:
            if turn.answered:
                return "unknown"
            with turn_context(self.session_id, request_id):
                logger.info("turn cancelled")
                if turn.invoked_at is None:
                    turn.cancel_requested = True  # answered once its step is done
                    if turn.wake is not None:
                        turn.wake.set()
                    return "cancelled"
                self._stop_master(turn, abandon=True)
                self._answer(turn, error_reply(CANCELLED), TurnStatus.CANCELLED)
            return "cancelled"
        room = self.room
        queued = room.queued.get(request_id)
        if queued is not None and request_id not in room.cancelled:
            # Answered now; its message, still in the stash, is skipped when it comes up.
            room.cancelled.add(request_id)
            turn = _Turn(request_id, queued, store_message=True)
            self.start_soon(
                self._finish_step,
                turn,
                error_reply(CANCELLED),
                TurnStatus.CANCELLED,
                name=f"{self.name} cancel",
            )
            return "cancelled"
        return "unknown"

    def _stop_master(self, turn: _Turn, *, abandon: bool = False) -> None:
        """Stop the master's work on ``turn``: the built-in one is told; an external one
        cannot be, so with ``abandon`` its late answer is waited for and kept."""
        request_id = str(turn.request_id)
        if self.deps.cancel_master_turn is not None:
            self.deps.cancel_master_turn(request_id)
        elif abandon:
            self._abandoned.add(request_id)
            return
        self.deps.master.cancel_master(request_id)

    # -- steps ----------------------------------------------------------------------------

    def _post(self, chat_input: ChatInput, request_id: uuid.UUID) -> None:
        room = self.room
        if request_id in room.cancelled:
            room.cancelled.discard(request_id)  # answered when it was cancelled
            room.queued.pop(request_id, None)
            return
        if self._turn is not None:
            if request_id not in room.queued:
                room.queued[request_id] = chat_input
                room.journal.turn(request_id, TurnStatus.QUEUED)
                self._record(request_id, "accepted", _accepted(chat_input, queued=True))
            self.stash()  # handled again once the running turn is answered
            return
        journal = room.journal
        recorded = []
        if room.queued.pop(request_id, None) is None:
            recorded.append(
                journal.record(
                    request_id, "accepted", _accepted(chat_input, queued=False), ready=False
                )
            )
        journal.turn(request_id, TurnStatus.RUNNING)
        recorded.append(journal.record(request_id, "started", ready=False))
        turn = self._turn = _Turn(request_id, chat_input)
        turn.unready = tuple(event.seq for event in recorded if event is not None)
        if self.deps.directory is not None:
            self.deps.directory.register(request_id, self.ref)
        # Taken now, so that no flush stores the running row before the look-up (which
        # may find another process's turn running) has carried it. A flush is still
        # asked for: what the look-up does not carry (events held until the numbering
        # is known, a row queued again) is stored by it.
        writes = journal.take()
        self._schedule_flush()
        self.start_soon(self._prepare_step, turn, writes, name=f"{self.name} turn")

    async def _prepare_step(self, turn: _Turn, writes: TurnWrites) -> None:
        """Run ENDPOINTS.md §9 steps 2 to 5; tell the payload back, or answer the turn.

        A turn that another process's turn of the conversation holds back waits, queued,
        until it may run (`_wait_for_turn`), and is then prepared again.
        """
        with turn_context(self.session_id, turn.request_id):
            logger.debug("turn started")
            try:
                while True:
                    if self.room.journal.suspended:
                        ended = await self._wait_for_turn(turn)
                        if ended is not None and ended.frame is not None:
                            await self._pass_on(turn, ended.frame)
                            return
                        if ended is not None:
                            assert ended.reply is not None
                            await self._finish_step(turn, ended.reply, ended.status)
                            return
                        writes = self.room.journal.take()
                    try:
                        prepared = await self._prepare(turn, writes)
                    except TurnConflictError:
                        if not self.room.journal.suspended:
                            raise
                        continue  # wait for the other turn
                    break
            except Exception as exc:
                if not is_database_unavailable(exc):
                    await self._crash(turn)
                    raise
                logger.warning("database unavailable during a chat turn: %r", exc)
                await self._finish_step(turn, error_reply(DATABASE_UNAVAILABLE), store=False)
                return
            if isinstance(prepared, Reply):
                await self._finish_step(turn, prepared)
                return
        await self.ref.tell(_Prepared(turn.request_id, prepared))

    async def _invoke(self, turn: _Turn, payload: dict[str, Any]) -> None:
        drain = self.deps.drain
        if drain is not None and drain.expired:
            logger.warning("turn cut short: the server is stopping")
            self._answer(turn, error_reply(SHUTTING_DOWN))
            return
        started = time.perf_counter()
        self._record(turn.request_id, "master_invoked", {"master": self.deps.master_kind})
        try:
            await self.deps.master.invoke_master(
                payload,
                request_id=str(turn.request_id),
                session_id=str(self.session_id),
                timeout=self.deps.master_timeout,
                reply_to=cast("ActorRef[MasterReplied]", self.ref),
            )
        except MasterAgentError as exc:
            self._observe(exc, started)
            self._answer(turn, error_reply(str(exc)))
            return
        turn.invoked_at = started

    def _reply_of(self, turn: _Turn, outcome: MasterReply | MasterAgentError) -> Reply:
        assert turn.invoked_at is not None
        self._observe(outcome, turn.invoked_at)
        if isinstance(outcome, MasterAgentError):
            # Its text is what the user should read (not active, failed, deadline, router).
            return error_reply(str(outcome))
        reply = reply_from_master(outcome.response, outcome.execution_time)
        return reply if reply is not None else error_reply(UNEXPECTED)

    def _router_down(self, ref: ActorRef[Any]) -> None:
        master = self.deps.master.ref
        turn = self._turn
        if master is None or ref.name != master.name or turn is None or turn.invoked_at is None:
            return
        with turn_context(self.session_id, turn.request_id):
            logger.warning("the router session went down while the turn waited for it")
            error = RouterUnavailableError()
            self._observe(error, turn.invoked_at)
            self._answer(turn, error_reply(str(error)))

    def _expire(self) -> None:
        # Called by the drain, outside this actor: the cut itself happens in handle.
        try:
            self.ref.tell_nowait(_Expired())
        except MailboxFullError:
            logger.warning("chat %s missed the stop's deadline: its mailbox is full", self.name)

    def _cut(self) -> None:
        turn = self._turn
        if turn is None or turn.invoked_at is None:
            if turn is not None and turn.wake is not None:
                turn.wake.set()  # a waiting turn sees the deadline at once
            return  # a turn between steps checks the deadline itself
        with turn_context(self.session_id, turn.request_id):
            logger.warning("turn cut short: the server is stopping")
            self.deps.master.cancel_master(str(turn.request_id))
            self._answer(turn, error_reply(SHUTTING_DOWN))

    def _answer(self, turn: _Turn, reply: Reply, status: TurnStatus | None = None) -> None:
        turn.invoked_at = None
        self.start_soon(self._finish_step, turn, reply, status, name=f"{self.name} answer")

    async def _finish_step(
        self,
        turn: _Turn,
        reply: Reply,
        status: TurnStatus | None = None,
        *,
        store: bool = True,
    ) -> None:
        with turn_context(self.session_id, turn.request_id):
            try:
                await self._finish(turn, reply, status, store=store)
            except Exception as exc:
                if not is_database_unavailable(exc):
                    logger.exception("storing a chat turn failed")
                    raise
                # The frame went out; only the history misses this reply.
                logger.warning("database unavailable: the turn's reply is not stored: %r", exc)
            logger.debug("turn answered")
        if not turn.store_message:  # a queued turn cancelled: the running one goes on
            await self.ref.tell(_Answered(turn.request_id))

    async def _crash(self, turn: _Turn) -> None:
        """Answer a turn that failed unexpectedly (the caller then re-raises)."""
        logger.exception("chat turn failed")
        try:
            await self._finish(turn, error_reply(UNEXPECTED))
        except Exception:
            logger.exception("storing the answer of a failed turn failed")

    def _observe(self, outcome: MasterReply | MasterAgentError, started: float) -> None:
        observe = self.deps.observe
        if observe is not None:
            observe(_outcome_kind(outcome), time.perf_counter() - started)

    # -- the database work ----------------------------------------------------------------

    async def _wait_for_turn(self, turn: _Turn) -> _Ended | None:
        """Wait until ``turn`` may run: another process runs a turn of the conversation,
        or numbered events this process had not seen. The turn is ``queued`` meanwhile
        and its events are held (the journal is suspended); they are numbered after the
        other process's events once it runs.

        The wait ends with a ``genai_turns`` notice of another process (`TurnRelay`),
        or after a doubling pause (a notice missed while the listener was down), when the
        turn takes the conversation's running slot (`TurnStatements.claim`). A running
        turn of this process left behind (its final status was never stored) is ended
        as interrupted; a process that is gone is ended by its peers' heartbeats.

        Returns:
            None once the turn may run; else how it ended: it was cancelled, the server
            is stopping, the database is down, or it was ended elsewhere (a peer took
            this process for gone while the database was cut, and answered it).
        """
        room = self.room
        drain = self.deps.drain
        pause = _WAIT_FIRST_PAUSE
        outcome: _Ended | None = None
        logger.info("turn waits for another turn of the conversation")
        try:
            while True:
                turn.wake = room.turn_ended = anyio.Event()
                if turn.cancel_requested:
                    outcome = _Ended(error_reply(CANCELLED), TurnStatus.CANCELLED)
                    break
                if drain is not None and drain.expired:
                    outcome = _Ended(error_reply(SHUTTING_DOWN))
                    break
                try:
                    if await self._claim_slot(turn):
                        break
                    outcome = await self._ended_elsewhere(turn)
                    break
                except TurnConflictError:
                    pass
                except Exception as exc:
                    if not is_database_unavailable(exc):
                        raise
                    logger.warning("database unavailable while a turn waits: %r", exc)
                    outcome = _Ended(error_reply(DATABASE_UNAVAILABLE))
                    break
                with anyio.move_on_after(pause):
                    await turn.wake.wait()
                pause = min(pause * 2, _WAIT_MAX_PAUSE)
        finally:
            turn.wake = room.turn_ended = None
        await self._resume_numbering()
        if outcome is None:
            room.journal.turn(turn.request_id, TurnStatus.RUNNING)
            logger.info("turn runs after waiting")
        return outcome

    async def _ended_elsewhere(self, turn: _Turn) -> _Ended:
        """The turn could not take the slot: its reply stored elsewhere, to pass on, or
        (the conversation is gone) the refusal."""
        async with self._store.connect() as db:
            frame = await db.reply_of(
                self.session_id, owner_id=self.user_id, request_id=turn.request_id
            )
        if frame is None:
            return _Ended(error_reply(CHAT_NOT_FOUND.format(self.session_id)))
        logger.warning("turn was ended by another process while it waited")
        return _Ended(frame=frame)

    async def _pass_on(self, turn: _Turn, frame: str) -> None:
        """Answer the sockets with the reply another process stored for ``turn``."""
        turn.answered = turn.finishing = True
        live = self.room.live()
        for outbox in live:
            outbox.send_nowait(frame)
        self.room.answered(turn.request_id, live)
        self.room.settle()
        await self.ref.tell(_Answered(turn.request_id))

    async def _claim_slot(self, turn: _Turn) -> bool:
        """Try to make ``turn`` the conversation's running one (see `_wait_for_turn`).

        Raises:
            TurnConflictError: Another process's turn still runs.
        """
        async with self._store.connect() as db:
            try:
                return await db.claim(
                    self.session_id, owner_id=self.user_id, request_id=turn.request_id
                )
            except TurnConflictError:
                holder = await db.running(self.session_id)
                if holder is None or holder[1] != self.deps.process_id:
                    raise
            # This process's own, not this turn (one runs at a time here): left behind.
            logger.warning("turn %s was left running: ended as interrupted", holder[0])
            await db.interrupt(self.session_id, request_id=holder[0])
            return await db.claim(
                self.session_id, owner_id=self.user_id, request_id=turn.request_id
            )

    async def _resume_numbering(self) -> None:
        """Read the events other processes stored after ours and number ours after them.

        If the database cannot say, numbering goes on from what this process knows: the
        turn is then answered with an error that may share numbers with another's.
        """
        journal = self.room.journal
        if not journal.suspended:
            return
        try:
            async with self._store.connect() as db:
                found = await db.events_after(
                    self.session_id,
                    owner_id=self.user_id,
                    after_seq=journal.published,
                    limit=_REPLAY_PAGE,
                )
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            logger.warning("turn events numbered without the database: %r", exc)
            self.room.resume(self.session_id, (), journal.published)
            return
        events = [TurnEvent(seq, rid, kind, at, data) for seq, rid, kind, data, at in found.events]
        self.room.resume(self.session_id, events, found.last_seq)

    async def _prepare(self, turn: _Turn, writes: TurnWrites) -> Reply | dict[str, Any]:
        """Find or create the conversation, stamp the files, resolve provider and config,
        store the user's message; return the master's payload.

        Everything is stored before the master is invoked (the master reads the user's
        message back over HTTP). The conversation and the stamps stay when the turn
        answers an error, as in the original; the user's message is stored only once the
        turn can reach the master. Once a turn of this conversation has reached the
        master, the next ones store their message in the same round trip as the look-up
        whenever the provider's key is still the one that worked.

        Each step holds one pooled connection at a time: attached files are stamped
        after the look-up's connection is back in the pool, so turns with files never
        wait for each other's connections.
        """
        chat_input = turn.input
        files: list[dict[str, Any]] = []
        async with self._store.connect() as db:
            found = await self._look_up(db, chat_input, turn, writes)
            turn.user_stored = found.stored
            if not found.conversation_exists and not await self._create(db, chat_input, turn):
                # Created meanwhile, by this user's message on another process, or by
                # another user's first message.
                found = await self._look_up(db, chat_input, turn, self.room.journal.take())
                turn.user_stored = found.stored
                if found.conversation_owner != self.user_id:
                    return error_reply(CHAT_NOT_FOUND.format(self.session_id))
            elif found.conversation_exists and found.conversation_owner != self.user_id:
                return error_reply(CHAT_NOT_FOUND.format(self.session_id))
            if not chat_input.files:
                return await self._resolve(db, found, turn, files)
        files = await self._stamp(chat_input, turn)
        if found.stored:
            return await self._resolve(None, found, turn, files)
        async with self._store.connect() as db:
            return await self._resolve(db, found, turn, files)

    async def _create(self, db: TurnStatements, chat_input: ChatInput, turn: _Turn) -> bool:
        """Create the conversation with the journal's writes; False if its id was taken
        meanwhile (nothing is stored then)."""
        journal = self.room.journal
        writes = journal.take()
        try:
            created = await db.create_conversation(
                self.session_id,
                owner_id=self.user_id,
                title=title_for(chat_input.message),
                writes=writes,
            )
        except BaseException:
            journal.give_back(writes)
            raise
        if not created:
            journal.give_back(writes)
            return False
        self._owned = True
        self._started(turn)
        return True

    def _started(self, turn: _Turn) -> None:
        """The turn runs (its running row is stored): its first events go out."""
        if turn.unready:
            journal = self.room.journal
            for seq in turn.unready:
                journal.ready(seq)
            turn.unready = ()
            self.room.publish_ready(self.session_id)

    async def _resolve(
        self,
        db: TurnStatements | None,
        found: TurnLookup,
        turn: _Turn,
        files: list[dict[str, Any]],
    ) -> Reply | dict[str, Any]:
        """Check the config, decrypt its key and store the user's message (on ``db``,
        needed unless it is stored already); return the payload or the error reply."""
        chat_input = turn.input
        choice = found.choice
        if choice is None:
            # Which of the two is missing decides the error.
            if chat_input.provider is not None and not found.provider_exists:
                return error_reply(PROVIDER_NOT_FOUND.format(chat_input.provider))
            return error_reply(CONFIG_NOT_FOUND.format(chat_input.llm_name))
        api_key: str | None = None
        if choice.api_key and not is_ollama(choice.provider_name):
            if self.deps.cipher is None:
                return error_reply(DECRYPT_FAILED)
            try:
                api_key = await self.deps.cipher.decrypt_async(choice.api_key)
            except ApiKeyDecryptionError:
                return error_reply(DECRYPT_FAILED)
        if not found.stored:
            assert db is not None
            await db.add_message(
                self.session_id, content=chat_input.message, request_id=turn.request_id
            )
            turn.user_stored = True
        self._usable_key = (choice.api_key,)
        return master_payload(
            session_id=self.session_id,
            user_id=self.user_id,
            configs=configs_for(choice, api_key),
            files=files,
            timestamp=self.deps.clock(),
        )

    async def _look_up(
        self, db: TurnStatements, chat_input: ChatInput, turn: _Turn, writes: TurnWrites
    ) -> TurnLookup:
        """Look up (and store the message when that is safe), storing ``writes`` (the
        journal's) on the way if the conversation is the user's.

        Raises:
            TurnConflictError: Another process's turn of the conversation runs, or
                numbered events this process had not seen: the journal is suspended
                and the turn queued again (`_wait_for_turn`).
        """
        journal = self.room.journal
        try:
            if self._usable_key is None:
                found = await db.look_up(
                    self.session_id,
                    owner_id=self.user_id,
                    llm_name=chat_input.llm_name,
                    provider_name=chat_input.provider,
                    writes=writes,
                )
            else:
                found = await db.look_up_and_store(
                    self.session_id,
                    owner_id=self.user_id,
                    llm_name=chat_input.llm_name,
                    provider_name=chat_input.provider,
                    content=chat_input.message,
                    request_id=turn.request_id,
                    api_key=self._usable_key[0],
                    writes=writes,
                )
        except TurnConflictError:
            # At once, before anything else can take the writes: the turn's events are
            # held and numbered again after the other process's.
            journal.give_back(writes)
            journal.suspend()
            journal.requeue(turn.request_id)
            turn.unready = ()
            raise
        except BaseException:
            journal.give_back(writes)
            raise
        if found.conversation_owner == self.user_id:
            self._owned = True
            self._started(turn)
        else:  # stored nothing: the conversation is new (or not the user's)
            journal.give_back(writes)
        return found

    async def _stamp(self, chat_input: ChatInput, turn: _Turn) -> list[dict[str, Any]]:
        """Stamp the message's files with this session and request; return the request's."""
        async with self.deps.sessionmaker.begin() as session:
            repo = FileRepository(session)
            await repo.stamp(
                chat_input.files,
                owner_id=self.user_id,
                session_id=self.session_id,
                request_id=turn.request_id,
            )
            found = await repo.list_for_request(turn.request_id, owner_id=self.user_id)
        return [file_dto(f) for f in found]

    async def _finish(
        self,
        turn: _Turn,
        reply: Reply,
        status: TurnStatus | None = None,
        *,
        store: bool = True,
    ) -> None:
        """Store the master's turn (once the user's is stored) and answer every socket.

        The turn's final event and status go in the same statement (the event names no
        files; if the request has some, it is amended and stored again). The frame goes
        out even if the database fails; the failure then propagates. Once per turn: a
        turn answered already is left alone.
        """
        if turn.answered or turn.finishing:
            return
        turn.finishing = True
        self._started(turn)  # its first events go out in any case, before the last
        journal = self.room.journal
        status = status or _status_of(reply)
        body = agent_response_body(
            reply, request_id=turn.request_id, session_id=self.session_id, files=()
        )
        final = journal.record(turn.request_id, status, {"reply": body}, ready=False)
        journal.turn(turn.request_id, status, delivered=bool(self.room.live()))
        files: list[dict[str, Any]] = []
        try:
            if store:
                writes = journal.take()
                try:
                    found = await self._store_final(turn, reply, writes)
                except BaseException:
                    journal.give_back(writes)
                    raise
                files = [file_dto(f) for f in await self._on_disk(found)]
        finally:
            if files:
                body = agent_response_body(
                    reply, request_id=turn.request_id, session_id=self.session_id, files=files
                )
                if final is not None:
                    journal.amend(final.seq, {"reply": body})
            if final is not None:
                journal.ready(final.seq)
            if not turn.answered:
                turn.answered = True
                # The final event first: a watcher's log of the turn is whole once the
                # reply arrives.
                self.room.publish_ready(self.session_id)
                frame = compact_json(body)
                live = self.room.live()
                for outbox in live:
                    outbox.send_nowait(frame)
                self.room.answered(turn.request_id, live)
                if journal.pending:
                    self._schedule_flush()
                self.room.settle()

    async def _store_final(self, turn: _Turn, reply: Reply, writes: TurnWrites) -> list[File]:
        """Store the reply (or, for a turn that stored no message, nothing but the
        writes) and return the request's files."""
        async with self._store.connect() as db:
            if turn.store_message and self._owned:
                await db.add_message(
                    self.session_id, content=turn.input.message, request_id=turn.request_id
                )
                turn.user_stored = True
            if turn.user_stored:
                return await db.add_reply(
                    self.session_id,
                    content=stored_content(reply),
                    request_id=turn.request_id,
                    owner_id=self.user_id,
                    writes=writes,
                )
            return await db.files_of_request(
                turn.request_id, owner_id=self.user_id, session_id=self.session_id, writes=writes
            )

    async def _on_disk(self, files: Sequence[File]) -> list[File]:
        directory = self.deps.files_dir
        if directory is None or not files:
            return list(files)
        return [f for f in files if await anyio.Path(directory / f.internal_name).exists()]


def _accepted(chat_input: ChatInput, *, queued: bool) -> dict[str, Any]:
    return {
        "message": chat_input.message,
        "llm_name": chat_input.llm_name,
        "provider": chat_input.provider,
        "files": [str(file_id) for file_id in chat_input.files],
        "queued": queued,
    }


def _status_of(reply: Reply) -> TurnStatus:
    response = reply.response
    if isinstance(response, Mapping) and response.get("is_success"):
        return TurnStatus.ANSWERED
    return TurnStatus.FAILED


def _outcome_kind(outcome: MasterReply | MasterAgentError) -> str:
    if not isinstance(outcome, MasterAgentError):
        return "ok"
    for kind, error in _ERROR_KINDS:
        if isinstance(outcome, error):
            return kind
    return "failed"


_ERROR_KINDS: tuple[tuple[str, type[MasterAgentError]], ...] = (
    ("not_active", MasterNotActiveError),
    ("deadline", MasterTimeoutError),
    ("router", RouterUnavailableError),
)
