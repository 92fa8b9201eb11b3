"""ChatSupervisor (one ChatActor per user and session) and the clients web/ uses."""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from actors.fanout import DEFAULT_OUTBOX_CAPACITY, SocketOutbox
from persistence import ChatTurnStore, is_database_unavailable
from runtime import (
    ActivationLimitError,
    ActorDeadError,
    ActorError,
    ChildSpec,
    DynamicSupervisor,
    MailboxFullError,
    OverflowPolicy,
    Restart,
    RestartIntensity,
)

from ._actor import CancelTurn, ChatActor, PostMessage, Room, Subscribe, Unsubscribe
from ._exceptions import ChatBusyError, ChatUnavailableError

if TYPE_CHECKING:
    from actors.fanout import LogFanoutClient
    from runtime import ActorRef, ActorSystem

    from ._actor import ChatDeps, ChatMessage
    from ._frames import ChatInput

__all__ = [
    "DEFAULT_CHAT_INTENSITY",
    "DEFAULT_QUEUED_MESSAGES",
    "ChatSession",
    "ChatSupervisor",
    "ChatsClient",
    "chat_supervisor_spec",
]

logger = logging.getLogger(__name__)

DEFAULT_QUEUED_MESSAGES = 16
# The room bounds the posts (`queued_messages`); the mailbox only needs room for them,
# the sockets' subscriptions and the turn's own messages, so it never refuses those.
_MAILBOX_CAPACITY = 256
# The window counts the crashes of every session together; a few sessions failing
# must not take all the others down with the supervisor.
DEFAULT_CHAT_INTENSITY = RestartIntensity(max_restarts=50, period=10.0)

_ATTACH_ATTEMPTS = 5
# Waiting for a passivating actor to stop may take a few rounds of the loop.
_ACTIVATE_ATTEMPTS = 20


class ChatSupervisor(DynamicSupervisor):
    """A dynamic supervisor of `ChatActor`s keyed by (user id, session id).

    Children restart after a crash (transient) and stop by themselves when their last
    socket has left. A session takes one running message and ``queued_messages``
    waiting behind it; one more is refused at once (`ChatBusyError` at the edge).

    Args:
        deps: Given to every chat actor.
        queued_messages: Messages that may wait behind the running turn, per session.
        max_children: Limit of live conversations (None: no limit).
        intensity: Restart limit over all conversations.
    """

    def __init__(
        self,
        deps: ChatDeps,
        *,
        queued_messages: int = DEFAULT_QUEUED_MESSAGES,
        max_children: int | None = None,
        intensity: RestartIntensity = DEFAULT_CHAT_INTENSITY,
    ) -> None:
        super().__init__(
            max_children=max_children,
            capacity=_MAILBOX_CAPACITY,
            overflow=OverflowPolicy.WAIT,
            restart=Restart.TRANSIENT,
            intensity=intensity,
        )
        self.deps = deps
        self.queued_messages = queued_messages

    def room_of(self, user_id: uuid.UUID, session_id: uuid.UUID) -> Room:
        """Return the room of ``user_id``'s ``session_id``, registering a new one if needed."""
        deps = self.deps
        return deps.rooms.setdefault(
            (user_id, session_id),
            lambda: Room(limit=self.queued_messages + 1, drain=deps.drain),
        )

    def live(self, user_id: uuid.UUID, session_id: uuid.UUID) -> ActorRef[ChatMessage] | None:
        """Return the running chat actor of ``user_id``'s ``session_id``, if any."""
        ref: ActorRef[ChatMessage] | None = self.get(f"{user_id}:{session_id}")
        return ref

    async def activate(self, user_id: uuid.UUID, session_id: uuid.UUID) -> ActorRef[ChatMessage]:
        """Return the chat actor of ``user_id``'s ``session_id``, starting it if needed.

        It runs the conversation's registered room (`room_of`).

        Raises:
            ActivationLimitError: ``max_children`` conversations are live.
            ActorDeadError: The supervisor is not running.
        """
        deps = self.deps
        room = self.room_of(user_id, session_id)

        def factory() -> ChatActor:
            return ChatActor(user_id, session_id, deps, room)

        room.activating += 1
        try:
            ref: ActorRef[ChatMessage] = await self.get_or_start(f"{user_id}:{session_id}", factory)
        finally:
            room.activating -= 1
            deps.rooms.release((user_id, session_id), room)  # a start that failed
        return ref


def chat_supervisor_spec(deps: ChatDeps, *, name: str = "chats", **options: Any) -> ChildSpec:
    """Return the child spec of the permanent `ChatSupervisor` (``options`` go to it)."""
    return ChildSpec(name, lambda: ChatSupervisor(deps, **options), restart=Restart.PERMANENT)


class ChatSession:
    """One socket's handle on its conversation: post messages, read frames from `outbox`.

    Create it with `ChatsClient.open_session`. A socket that does not watch the turn
    events joins the conversation's `Room` without a chat actor: the actor is started
    for its first message. A watcher subscribes to the actor from the start.
    """

    def __init__(
        self,
        client: ChatsClient,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        outbox: SocketOutbox,
        subscription: Subscribe | None = None,
    ) -> None:
        self._client = client
        self.user_id = user_id
        self.session_id = session_id
        self.outbox = outbox
        # How a watcher subscribes; later attachments (after a restart of the chat
        # actor) only ask for what is new. None: a plain socket, in the room only.
        self._subscription = subscription
        self._ref: ActorRef[ChatMessage] | None = None
        self._room: Room | None = None

    async def post(self, chat_input: ChatInput) -> None:
        """Queue one message for its turn; the answer arrives on `outbox`.

        Waits only if the chat actor has to be started.

        Raises:
            ChatBusyError: Too many messages of this session are queued already.
            ChatStoppingError: The server's stop has begun.
            ChatUnavailableError: No chat actor can be reached.
        """
        ref, room = self._ref, self._room
        if ref is None or room is None or not ref.is_alive or room.passivating is not None:
            ref, room = await self._reach()
        room.admit()
        try:
            ref.tell_nowait(PostMessage(chat_input))
        except MailboxFullError as exc:
            room.settle()
            raise ChatBusyError(f"too many messages queued for session {self.session_id}") from exc

    async def cancel(self, request_id: uuid.UUID) -> bool:
        """Cancel a running or queued turn of this session; False if none has that id.

        A plain socket starts no chat actor for it: with none running, no turn runs.

        Raises:
            ChatUnavailableError: No chat actor can be reached.
        """
        ref = self._ref
        if ref is None or not ref.is_alive:
            if self._subscription is None:
                ref = self._client._supervisor().live(self.user_id, self.session_id)
                if ref is None:
                    return False
            else:
                ref, self._room = await self._reach()
        try:
            outcome: str = await ref.ask(CancelTurn(request_id))
        except ActorDeadError:
            return False  # it has just passivated: nothing ran
        except ActorError as exc:
            raise ChatUnavailableError(f"cannot reach session {self.session_id}") from exc
        return outcome == "cancelled"

    async def _reach(self) -> tuple[ActorRef[ChatMessage], Room]:
        client = self._client
        if self._subscription is not None:
            found = await client._attach(self.user_id, self.session_id, self._again())
        else:
            found = await client._activate(self)
        self._ref, self._room = found
        return found

    def _again(self) -> Subscribe:
        """The subscription of a new attachment: a watcher resumes where it was."""
        first = self._subscription
        assert first is not None
        if self._room is None:
            return first
        last = self._room.watchers.get(self.outbox)
        return Subscribe(self.outbox, events=True, after_seq=last)

    def send_nowait(self, text: str) -> bool:
        """Queue a frame for this socket only (behind the frames already queued)."""
        return self.outbox.send_nowait(text)

    def _detach(self) -> None:
        self.outbox.discard()
        room, ref = self._room, self._ref
        if room is not None:
            room.remove(self.outbox)
        try:
            supervisor = self._client._supervisor()
        except ChatUnavailableError:
            return
        if ref is None:
            ref = supervisor.live(self.user_id, self.session_id)
        if ref is not None:
            # Only a hint, so that the last socket to leave lets the actor passivate:
            # the actor forgets closed outboxes by itself after a turn.
            with contextlib.suppress(MailboxFullError):
                ref.tell_nowait(Unsubscribe(self.outbox))
        if room is not None:
            supervisor.deps.rooms.release((self.user_id, self.session_id), room)


class ChatsClient:
    """What web/ uses to reach conversations and their live logs.

    Args:
        system: The actor system running the chat supervisor.
        path: The chat supervisor's registry path.
        fanout: The log fan-out; None sends no ``agent_log`` frames.
        outbox_capacity: Frames that may wait for one socket before it is closed.
    """

    def __init__(
        self,
        system: ActorSystem,
        *,
        path: str = "chats",
        fanout: LogFanoutClient | None = None,
        outbox_capacity: int = DEFAULT_OUTBOX_CAPACITY,
    ) -> None:
        self._system = system
        self._path = path
        self._fanout = fanout
        self._outbox_capacity = outbox_capacity

    def _supervisor(self) -> ChatSupervisor:
        try:
            found = self._system.supervisor(self._path)
        except KeyError as exc:
            raise ChatUnavailableError("the chat supervisor is not running") from exc
        if not isinstance(found, ChatSupervisor):
            raise ChatUnavailableError(f"{self._path!r} is not a chat supervisor")
        return found

    async def _attach(
        self, user_id: uuid.UUID, session_id: uuid.UUID, subscription: Subscribe
    ) -> tuple[ActorRef[ChatMessage], Room]:
        # An actor that is passivating when we reach it fails the ask; the next
        # activation then starts a fresh one.
        for _ in range(_ATTACH_ATTEMPTS):
            try:
                ref = await self._supervisor().activate(user_id, session_id)
                room: Room = await ref.ask(subscription)
            except ActivationLimitError as exc:
                raise ChatUnavailableError(str(exc)) from exc
            except ActorDeadError:
                await anyio.lowlevel.checkpoint()
                continue
            except ActorError as exc:
                raise ChatUnavailableError(f"cannot start session {session_id}") from exc
            return ref, room
        raise ChatUnavailableError(f"cannot reach session {session_id}")

    async def _activate(self, chat: ChatSession) -> tuple[ActorRef[ChatMessage], Room]:
        """Start (or find) the chat actor of a plain socket's room, to post to it.

        An actor that is passivating would lose what is posted to it: its stop is
        waited for and the next one started.
        """
        user_id, session_id = chat.user_id, chat.session_id
        for _ in range(_ACTIVATE_ATTEMPTS):
            try:
                supervisor = self._supervisor()
                room = chat._room
                if room is None or supervisor.deps.rooms.get((user_id, session_id)) is not room:
                    # Opened while no chat supervisor ran (or its room was lost with it).
                    room = await self._join(chat, supervisor)
                if room.passivating is not None:
                    await room.passivating.wait()
                    await anyio.lowlevel.checkpoint()
                    continue
                ref = await supervisor.activate(user_id, session_id)
            except ActivationLimitError as exc:
                raise ChatUnavailableError(str(exc)) from exc
            except ActorDeadError:
                await anyio.lowlevel.checkpoint()
                continue
            except ActorError as exc:
                raise ChatUnavailableError(f"cannot start session {session_id}") from exc
            if ref.is_alive and room.passivating is None:
                return ref, room
            await anyio.lowlevel.checkpoint()
        raise ChatUnavailableError(f"cannot reach session {session_id}")

    async def _join(self, chat: ChatSession, supervisor: ChatSupervisor) -> Room:
        """Put a plain socket in its conversation's room and send it the replies that
        reached no socket (one statement; no chat actor)."""
        user_id, session_id, outbox = chat.user_id, chat.session_id, chat.outbox
        room = supervisor.room_of(user_id, session_id)
        room.add(outbox)
        chat._room = room
        deps = supervisor.deps
        try:
            async with ChatTurnStore(deps.sessionmaker, process_id=deps.process_id).connect() as db:
                found = await db.attach(session_id, owner_id=user_id, after_seq=None, limit=0)
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            logger.warning("a socket joined session %s unreplayed: %r", session_id, exc)
            return room
        # The numbering of the conversation's events, as a watcher's read tells it.
        room.know(found.last_seq, session_id)
        # A reply the room's actor sent this socket meanwhile is not sent again.
        delivered_here = {request_id for request_id, sent in room.answered_to if id(outbox) in sent}
        for request_id, frame in found.undelivered:
            if request_id not in delivered_here:
                outbox.send_nowait(frame)
        return room

    async def cancel_turn(
        self, user_id: uuid.UUID, session_id: uuid.UUID, request_id: uuid.UUID
    ) -> bool:
        """Cancel ``user_id``'s turn ``request_id`` of ``session_id`` if a live chat actor
        of this process runs it or has it queued (it then answers it as cancelled)."""
        try:
            ref = self._supervisor().live(user_id, session_id)
        except ChatUnavailableError:
            return False
        if ref is None:
            return False
        try:
            outcome: str = await ref.ask(CancelTurn(request_id))
        except ActorError:
            return False
        return outcome == "cancelled"

    def open_session(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        events: bool = False,
        after_seq: int | None = None,
    ) -> _OpenSession:
        """Subscribe a new socket to ``user_id``'s ``session_id`` and its live logs
        (``async with``, which gives the `ChatSession`).

        ``events``: the socket also gets ``turn_event`` frames; ``after_seq``: first
        those numbered after it. Such a watcher is subscribed to the chat actor, started
        now; another socket only joins the conversation's room and is sent the replies
        that reached no socket, and its first message starts the actor.

        On exit the socket is unsubscribed (even when cancelled); the last socket to
        leave lets the chat actor passivate. A chat actor that cannot be reached now
        does not refuse the socket: each `ChatSession.post` tries to reach it again
        (and raises `ChatUnavailableError` while it cannot), so every message the
        socket sends can still be answered.
        """
        return _OpenSession(self, user_id, session_id, events or after_seq is not None, after_seq)


class _OpenSession:
    """`ChatsClient.open_session`'s context: an object of its own rather than an async
    generator, whose frame and context manager every open socket would keep (0.5 KB)."""

    __slots__ = ("_after_seq", "_chat", "_client", "_session_id", "_user_id", "_watch")

    def __init__(
        self,
        client: ChatsClient,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        watch: bool,
        after_seq: int | None,
    ) -> None:
        self._client = client
        self._user_id = user_id
        self._session_id = session_id
        self._watch = watch
        self._after_seq = after_seq
        self._chat: ChatSession | None = None

    async def __aenter__(self) -> ChatSession:
        client, user_id, session_id = self._client, self._user_id, self._session_id
        outbox = SocketOutbox(client._outbox_capacity)
        subscription = (
            Subscribe(outbox, events=True, after_seq=self._after_seq) if self._watch else None
        )
        chat = self._chat = ChatSession(client, user_id, session_id, outbox, subscription)
        try:
            try:
                if subscription is not None:
                    chat._ref, chat._room = await client._attach(user_id, session_id, subscription)
                else:
                    await client._join(chat, client._supervisor())
            except ChatUnavailableError as exc:
                logger.warning("socket of session %s opened unattached: %s", session_id, exc)
            if client._fanout is not None:
                await client._fanout.subscribe(user_id, session_id, outbox)
        except BaseException:
            self._leave()
            raise
        return chat

    async def __aexit__(self, *exc_info: object) -> None:
        self._leave()

    def _leave(self) -> None:
        chat = self._chat
        if chat is None:
            return
        self._chat = None
        chat._detach()
        fanout = chat._client._fanout
        if fanout is not None:
            fanout.unsubscribe_nowait(chat.user_id, chat.session_id, chat.outbox)
