"""ChatSupervisor (one ChatActor per user and session) and the clients web/ uses."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from actors.fanout import DEFAULT_OUTBOX_CAPACITY, SocketOutbox
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

    async def activate(self, user_id: uuid.UUID, session_id: uuid.UUID) -> ActorRef[ChatMessage]:
        """Return the chat actor of ``user_id``'s ``session_id``, starting it if needed.

        Raises:
            ActivationLimitError: ``max_children`` conversations are live.
            ActorDeadError: The supervisor is not running.
        """
        deps = self.deps
        # One per activation, shared by the restarts of that activation (a room made
        # here for a session that is live already is dropped unused).
        room = Room(limit=self.queued_messages + 1, drain=deps.drain)

        def factory() -> ChatActor:
            return ChatActor(user_id, session_id, deps, room)

        ref: ActorRef[ChatMessage] = await self.get_or_start(f"{user_id}:{session_id}", factory)
        return ref


def chat_supervisor_spec(deps: ChatDeps, *, name: str = "chats", **options: Any) -> ChildSpec:
    """Return the child spec of the permanent `ChatSupervisor` (``options`` go to it)."""
    return ChildSpec(name, lambda: ChatSupervisor(deps, **options), restart=Restart.PERMANENT)


class ChatSession:
    """One socket's handle on its conversation: post messages, read frames from `outbox`.

    Create it with `ChatsClient.open_session`.
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
        # How this socket subscribes; later attachments (after a restart of the chat
        # actor) only ask for what is new.
        self._subscription = subscription or Subscribe(outbox)
        self._ref: ActorRef[ChatMessage] | None = None
        self._room: Room | None = None

    async def post(self, chat_input: ChatInput) -> None:
        """Queue one message for its turn; the answer arrives on `outbox`.

        Waits only if the chat actor has to be started again.

        Raises:
            ChatBusyError: Too many messages of this session are queued already.
            ChatStoppingError: The server's stop has begun.
            ChatUnavailableError: No chat actor can be reached.
        """
        ref, room = self._ref, self._room
        if ref is None or room is None or not ref.is_alive:
            ref, room = await self._client._attach(self.user_id, self.session_id, self._again())
            self._ref, self._room = ref, room
        room.admit()
        try:
            ref.tell_nowait(PostMessage(chat_input))
        except MailboxFullError as exc:
            room.settle()
            raise ChatBusyError(f"too many messages queued for session {self.session_id}") from exc

    async def cancel(self, request_id: uuid.UUID) -> bool:
        """Cancel a running or queued turn of this session; False if none has that id.

        Raises:
            ChatUnavailableError: No chat actor can be reached.
        """
        ref = self._ref
        if ref is None or not ref.is_alive:
            ref, self._room = await self._client._attach(
                self.user_id, self.session_id, self._again()
            )
            self._ref = ref
        try:
            outcome: str = await ref.ask(CancelTurn(request_id))
        except ActorError as exc:
            raise ChatUnavailableError(f"cannot reach session {self.session_id}") from exc
        return outcome == "cancelled"

    def _again(self) -> Subscribe:
        """The subscription of a new attachment: a watcher resumes where it was."""
        first = self._subscription
        if not (first.events or first.after_seq is not None):
            return first
        room = self._room
        last = room.watchers.get(self.outbox) if room is not None else None
        return Subscribe(self.outbox, events=True, after_seq=last)

    def send_nowait(self, text: str) -> bool:
        """Queue a frame for this socket only (behind the frames already queued)."""
        return self.outbox.send_nowait(text)

    def _detach(self) -> None:
        self.outbox.discard()
        if self._ref is not None:
            # Only a hint: the actor forgets closed outboxes by itself after a turn.
            with contextlib.suppress(MailboxFullError):
                self._ref.tell_nowait(Unsubscribe(self.outbox))


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

    async def cancel_turn(
        self, user_id: uuid.UUID, session_id: uuid.UUID, request_id: uuid.UUID
    ) -> bool:
        """Cancel ``user_id``'s turn ``request_id`` of ``session_id`` if a live chat actor
        of this process runs it or has it queued (it then answers it as cancelled)."""
        try:
            ref = self._supervisor().get(f"{user_id}:{session_id}")
        except ChatUnavailableError:
            return False
        if ref is None:
            return False
        try:
            outcome: str = await ref.ask(CancelTurn(request_id))
        except ActorError:
            return False
        return outcome == "cancelled"

    @contextlib.asynccontextmanager
    async def open_session(
        self,
        user_id: uuid.UUID,
        session_id: uuid.UUID,
        *,
        events: bool = False,
        after_seq: int | None = None,
    ) -> AsyncIterator[ChatSession]:
        """Subscribe a new socket to ``user_id``'s ``session_id`` and its live logs.

        ``events``: the socket also gets ``turn_event`` frames; ``after_seq``: first
        those numbered after it.

        On exit the socket is unsubscribed (even when cancelled); the last socket to
        leave lets the chat actor passivate. A chat actor that cannot be reached now
        does not refuse the socket: each `ChatSession.post` tries to reach it again
        (and raises `ChatUnavailableError` while it cannot), so every message the
        socket sends can still be answered.
        """
        outbox = SocketOutbox(self._outbox_capacity)
        subscription = Subscribe(
            outbox, events=events or after_seq is not None, after_seq=after_seq
        )
        chat = ChatSession(self, user_id, session_id, outbox, subscription)
        fanout = self._fanout
        try:
            try:
                chat._ref, chat._room = await self._attach(user_id, session_id, subscription)
            except ChatUnavailableError as exc:
                logger.warning("socket of session %s opened unattached: %s", session_id, exc)
            if fanout is not None:
                await fanout.subscribe(user_id, session_id, outbox)
            yield chat
        finally:
            chat._detach()
            if fanout is not None:
                fanout.unsubscribe_nowait(user_id, session_id, outbox)
