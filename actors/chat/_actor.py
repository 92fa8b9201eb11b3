"""ChatActor: one front-end conversation of one user; runs its turns one at a time."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from persistence import (
    ApiKeyDecryptionError,
    ChatTurnStore,
    FileRepository,
    TurnLookup,
    TurnStatements,
)
from runtime import Actor

from ..session import MasterAgentError, MasterTimeoutError
from ._context import turn_context
from ._drain import SHUTTING_DOWN
from ._frames import (
    CHAT_NOT_FOUND,
    CONFIG_NOT_FOUND,
    DECRYPT_FAILED,
    PROVIDER_NOT_FOUND,
    UNEXPECTED,
    ChatInput,
    Reply,
    agent_response_frame,
    configs_for,
    error_reply,
    file_dto,
    is_ollama,
    master_payload,
    reply_from_master,
    stored_content,
    title_for,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from actors.fanout import SocketOutbox
    from persistence import File

    from ._drain import ChatDrain
    from ._ports import ApiKeyDecrypter, MasterInvoker

__all__ = [
    "DEFAULT_MASTER_TIMEOUT",
    "ChatActor",
    "ChatDeps",
    "ChatMessage",
    "PostMessage",
    "Room",
    "Subscribe",
    "Unsubscribe",
]

logger = logging.getLogger(__name__)

DEFAULT_MASTER_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class ChatDeps:
    """What every chat actor is given.

    Attributes:
        sessionmaker: Opens one database session per unit of work.
        master: Invokes the master agent (the router session's client).
        cipher: Decrypts provider API keys; None refuses every stored key.
        master_timeout: Deadline of one master invocation, in seconds
            (setting ``MASTER_AGENT_TIMEOUT``).
        files_dir: Where uploaded files live; a reply lists only files present there.
            None lists every file of the request.
        clock: Wall-clock seconds, for the payload's ``timestamp``.
        drain: The server's stop: cuts the master wait of a turn short at its
            deadline. None: turns are never cut.
    """

    sessionmaker: async_sessionmaker[AsyncSession]
    master: MasterInvoker
    cipher: ApiKeyDecrypter | None = None
    master_timeout: float = DEFAULT_MASTER_TIMEOUT
    files_dir: Path | None = None
    clock: Callable[[], float] = field(default=time.time)
    drain: ChatDrain | None = None


# -- messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PostMessage:
    """Run one turn for this message and answer every subscribed socket."""

    input: ChatInput


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Send this session's frames to ``outbox`` from now on (ask: answered once done)."""

    outbox: SocketOutbox


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Stop sending frames to ``outbox``; the last one leaving passivates the actor."""

    outbox: SocketOutbox


ChatMessage = PostMessage | Subscribe | Unsubscribe


# -- state that outlives a crash --------------------------------------------------------


class Room:
    """The sockets of one activation; it survives restarts of the actor after a crash."""

    def __init__(self) -> None:
        self._outboxes: list[SocketOutbox] = []

    def add(self, outbox: SocketOutbox) -> None:
        if outbox not in self._outboxes:
            self._outboxes.append(outbox)

    def remove(self, outbox: SocketOutbox) -> None:
        if outbox in self._outboxes:
            self._outboxes.remove(outbox)

    def live(self) -> list[SocketOutbox]:
        """Return the open outboxes, forgetting the closed ones."""
        self._outboxes = [outbox for outbox in self._outboxes if not outbox.closed]
        return list(self._outboxes)

    def broadcast(self, text: str) -> None:
        """Queue ``text`` on every open outbox; a full one closes itself. Never waits."""
        for outbox in self.live():
            outbox.send_nowait(text)


@dataclass(slots=True)
class _Turn:
    request_id: uuid.UUID
    user_stored: bool = False
    # Cancelled when the server's drain deadline passes during the master wait.
    cut: anyio.CancelScope = field(default_factory=anyio.CancelScope)


# -- the actor --------------------------------------------------------------------------


class ChatActor(Actor[ChatMessage]):
    """The conversation ``session_id`` of user ``user_id``.

    Messages are handled one at a time: a message posted while a turn runs waits in
    the mailbox and runs next (the queue policy; the mailbox bound limits how many may
    wait). Every turn ends in exactly one ``agent_response`` frame to every subscribed
    socket, errors included (ENDPOINTS.md §9, Q4, Q5). An unexpected exception still
    answers the turn with ``Unexpected error occured. Try again later`` and then crashes
    the actor, which its supervisor restarts with the same sockets. When the last socket
    has left and nothing is queued, the actor stops (passivation).

    Args:
        user_id: The owner.
        session_id: The conversation id.
        deps: Database, master invoker, cipher and settings.
        room: The subscribed sockets, shared with the instances restarted after a crash.
    """

    def __init__(
        self, user_id: uuid.UUID, session_id: uuid.UUID, deps: ChatDeps, room: Room
    ) -> None:
        self.user_id = user_id
        self.session_id = session_id
        self.deps = deps
        self.room = room
        self._store = ChatTurnStore(deps.sessionmaker)
        # The stored provider key of the last turn that reached the master (in a tuple:
        # it may be None); a message whose config still has it needs no separate store.
        self._usable_key: tuple[str | None] | None = None

    async def handle(self, message: ChatMessage) -> Any:
        match message:
            case Subscribe(outbox):
                self.room.add(outbox)
            case Unsubscribe(outbox):
                self.room.remove(outbox)
                self._passivate_if_idle()
            case PostMessage(chat_input):
                await self._turn(chat_input)
                self._passivate_if_idle()
        return None

    def _passivate_if_idle(self) -> None:
        if not self.room.live() and self.ref.statistics().depth == 0:
            self.stop()

    async def _turn(self, chat_input: ChatInput) -> None:
        turn = _Turn(uuid.uuid4())
        with turn_context(self.session_id, turn.request_id), self._counted(turn):
            logger.debug("turn started")
            try:
                reply = await self._steps(chat_input, turn)
            except Exception:
                logger.exception("chat turn failed")
                await self._finish(turn, error_reply(UNEXPECTED))
                raise
            await self._finish(turn, reply)
            logger.debug("turn answered")

    @contextlib.contextmanager
    def _counted(self, turn: _Turn) -> Iterator[None]:
        drain = self.deps.drain
        if drain is None:
            yield
            return
        with drain.turn() as cut:
            turn.cut = cut
            yield

    async def _steps(self, chat_input: ChatInput, turn: _Turn) -> Reply:
        """Run ENDPOINTS.md §9 steps 2 to 6; return the reply. Expected failures are replies."""
        prepared = await self._prepare(chat_input, turn)
        if isinstance(prepared, Reply):
            return prepared
        return await self._invoke(prepared, turn)

    async def _prepare(self, chat_input: ChatInput, turn: _Turn) -> Reply | dict[str, Any]:
        """Find or create the conversation, stamp the files, resolve provider and config,
        store the user's message; return the master's payload.

        Everything is stored before the master is invoked (the master reads the user's
        message back over HTTP). The conversation and the stamps stay when the turn
        answers an error, as in the original; the user's message is stored only once the
        turn can reach the master. Once a turn of this conversation has reached the
        master, the next ones store their message in the same round trip as the look-up
        whenever the provider's key is still the one that worked.
        """
        owner = self.user_id
        async with self._store.connect() as db:
            found = await self._look_up(db, chat_input, turn)
            turn.user_stored = found.stored
            if not found.stored:
                if not found.conversation_exists:
                    created = await db.create_conversation(
                        self.session_id, owner_id=owner, title=title_for(chat_input.message)
                    )
                    if not created:  # taken meanwhile by another user's first message
                        return error_reply(CHAT_NOT_FOUND.format(self.session_id))
                elif found.conversation_owner != owner:
                    return error_reply(CHAT_NOT_FOUND.format(self.session_id))
            files = await self._stamp(chat_input, turn) if chat_input.files else []
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

    async def _look_up(self, db: TurnStatements, chat_input: ChatInput, turn: _Turn) -> TurnLookup:
        if self._usable_key is None:
            return await db.look_up(
                self.session_id,
                owner_id=self.user_id,
                llm_name=chat_input.llm_name,
                provider_name=chat_input.provider,
            )
        return await db.look_up_and_store(
            self.session_id,
            owner_id=self.user_id,
            llm_name=chat_input.llm_name,
            provider_name=chat_input.provider,
            content=chat_input.message,
            request_id=turn.request_id,
            api_key=self._usable_key[0],
        )

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

    async def _invoke(self, payload: dict[str, Any], turn: _Turn) -> Reply:
        timeout = self.deps.master_timeout
        try:
            # The invoker has the same deadline; this one also holds for an edge that
            # ignores it, so a turn can never wait longer.
            with turn.cut, anyio.fail_after(timeout):
                answer = await self.deps.master.invoke_master(
                    payload,
                    request_id=str(turn.request_id),
                    session_id=str(self.session_id),
                    timeout=timeout,
                )
            if turn.cut.cancelled_caught:
                logger.warning("turn cut short: the server is stopping")
                return error_reply(SHUTTING_DOWN)
        except TimeoutError:
            return error_reply(str(MasterTimeoutError(timeout)))
        except MasterAgentError as exc:
            # Its text is what the user should read (not active, failed, router down).
            return error_reply(str(exc))
        reply = reply_from_master(answer.response, answer.execution_time)
        return reply if reply is not None else error_reply(UNEXPECTED)

    async def _finish(self, turn: _Turn, reply: Reply) -> None:
        """Store the master's turn (once the user's is stored) and answer every socket.

        The frame goes out even if the database fails; the failure then propagates.
        """
        files: list[dict[str, Any]] = []
        try:
            async with self._store.connect() as db:
                if turn.user_stored:
                    found = await db.add_reply(
                        self.session_id,
                        content=stored_content(reply),
                        request_id=turn.request_id,
                        owner_id=self.user_id,
                    )
                else:
                    found = await db.files_of_request(turn.request_id, owner_id=self.user_id)
            files = [file_dto(f) for f in await self._on_disk(found)]
        finally:
            self.room.broadcast(
                agent_response_frame(
                    reply, request_id=turn.request_id, session_id=self.session_id, files=files
                )
            )

    async def _on_disk(self, files: Sequence[File]) -> list[File]:
        directory = self.deps.files_dir
        if directory is None or not files:
            return list(files)
        return [f for f in files if await anyio.Path(directory / f.internal_name).exists()]
