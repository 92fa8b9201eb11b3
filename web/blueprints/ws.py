"""The front-end WebSocket ``/frontend/ws`` (ENDPOINTS.md §9).

Messages are validated by hand rather than with ``receive_as``: an invalid frame must
be answered with the Q3 error frame and the socket kept open, and the older
``{"llm": {"llm_name": …}}`` form must be read as well (Q2).

Every message gets exactly one ``agent_response`` frame: its turn's answer, or, for a
message that cannot be taken (the server is stopping, too many messages wait in the
chat, no chat actor can be reached), a refusal in the same shape with ``is_success``
false, a fresh ``request_id`` and nothing stored. The original web UI shows only
``agent_response`` frames and waits for one after each message. ``{"type": "error"}``
frames answer only what is not a message (a frame that does not parse or validate).
A message whose text, ``llm_name`` or ``provider`` holds a NUL character or a lone
surrogate (which PostgreSQL cannot store) is refused with that frame too, rather than
altered: a chat shows what the user sent or nothing.

While the server stops (``services().drain``): a new socket is accepted and closed
at once with 1013 ("try again later": another instance, or this one restarted, will
take it; a close before accepting would reach the browser as a bare HTTP 403); a message
on an open socket is refused; once every message accepted before the stop is answered
(those queued behind a turn included), the open sockets send what is queued and close
with 1001 ("going away").

A user holds at most ``MAX_SOCKETS_PER_USER`` open sockets, over all sessions. One more
is accepted, sent the error frame ``{"type": "error", "error": "Too many open sockets"}``
and closed with 1013, for the same reason: a refused handshake would log the UI out.

At most ``MAX_PENDING_HANDSHAKES`` sockets, over all clients, are between their
handshake and the check of their token (a database read); one more is accepted and
closed with 1013 at once, before its token is looked at.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID, uuid4

import anyio
from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, ValidationError
from quart import Blueprint, Websocket, websocket

from actors.chat import (
    DATABASE_UNAVAILABLE,
    SHUTTING_DOWN,
    ChatBusyError,
    ChatInput,
    ChatSession,
    ChatStoppingError,
    ChatUnavailableError,
    agent_response_frame,
    error_reply,
)
from actors.fanout import SocketOutbox
from persistence import TurnHistory, is_database_unavailable

from ..asyncapi import CancelMessage
from ..auth import resolve_token
from ..errors import format_error
from ..services import services
from ..validation import hostile_errors

__all__ = [
    "BUSY",
    "CHAT_UNAVAILABLE",
    "CLOSE_GOING_AWAY",
    "CLOSE_POLICY",
    "CLOSE_TOO_SLOW",
    "SERVER_STOPPING",
    "TOO_MANY_HANDSHAKES",
    "TOO_MANY_SOCKETS",
    "UNSTORABLE",
    "CancelMessage",
    "IncomingMessage",
    "blueprint",
    "parse_message",
]

blueprint = Blueprint("ws", __name__)

CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_TOO_SLOW = CLOSE_TRY_AGAIN
CLOSE_INTERNAL = 1011
CLOSE_GOING_AWAY = 1001
BAD_TOKEN = "JWT token is expired or invalid"
BAD_SESSION = "session_id is not a valid UUID"
BAD_AFTER_SEQ = "after_seq must be a non-negative integer"
BAD_EVENTS = "events must be 0 or 1"
TURN_NOT_FOUND = "Turn not found"
TURN_FINISHED = "Turn is already finished"
VALIDATION_FAILED = "Message validation failed"
SERVER_STOPPING = "Server is shutting down"
BUSY = "Too many messages are waiting in this chat. Try again later"
CHAT_UNAVAILABLE = "Chat is not available. Try again later"
TOO_MANY_SOCKETS = "Too many open sockets"
TOO_MANY_HANDSHAKES = "Too many connections. Try again later"
UNSTORABLE = "Message must not contain NUL characters or invalid Unicode"


class _OlderLlm(BaseModel):
    model_config = ConfigDict(extra="ignore")

    llm_name: str | None = None
    provider: str | None = None


class IncomingMessage(BaseModel):
    """One front-end message, in the current or the older form (extra keys ignored)."""

    model_config = ConfigDict(extra="ignore")

    message: str
    llm_name: str | None = None
    provider: str | None = None
    llm: _OlderLlm | None = None
    files: list[UUID] | None = None

    def to_input(self) -> ChatInput | None:
        """Return the chat input (top-level fields win over the older ``llm`` object),
        or None when no ``llm_name`` is given in either form."""
        older = self.llm or _OlderLlm()
        llm_name = self.llm_name if self.llm_name is not None else older.llm_name
        if llm_name is None:
            return None
        provider = self.provider if self.provider is not None else older.provider
        return ChatInput(self.message, llm_name, provider, tuple(self.files or ()))


def parse_message(data: str | bytes) -> ChatInput | CancelMessage | dict[str, Any]:
    """Return the chat input or the cancel of one frame, or the Q3 error frame for an
    invalid one."""
    if (isinstance(data, str) and '"cancel"' in data) or (
        isinstance(data, bytes) and b'"cancel"' in data
    ):
        # Only a frame that names it can be a cancel; a chat message never has a type.
        with contextlib.suppress(ValidationError):
            return CancelMessage.model_validate_json(data)
    try:
        found = IncomingMessage.model_validate_json(data).to_input()
    except ValidationError as exc:
        errors = [format_error(error) for error in exc.errors(include_url=False)]
        return {"type": "error", "error": VALIDATION_FAILED, "details": errors}
    if found is None:
        raw = json.loads(data)
        missing = {"type": "missing", "loc": ["llm_name"], "msg": "Field required", "input": raw}
        return {"type": "error", "error": VALIDATION_FAILED, "details": [missing]}
    return found


def _unstorable(found: ChatInput) -> bool:
    # Refused here, not in the chat actor: a failed write there would crash it.
    texts = [found.message, found.llm_name, found.provider or ""]
    return bool(hostile_errors(texts, [], max_depth=2))


def _error_frame(text: str) -> str:
    return json.dumps({"type": "error", "error": text}, separators=(",", ":"))


def _refusal(text: str, session_id: UUID) -> str:
    """The ``agent_response`` frame of a message that was not taken (nothing stored)."""
    return agent_response_frame(
        error_reply(text), request_id=uuid4(), session_id=session_id, files=()
    )


@blueprint.websocket("/frontend/ws")
async def frontend_ws() -> None:
    """Authenticate, subscribe to the conversation, then relay frames both ways."""
    admitted = await _admit()
    if admitted is None:
        return
    # Only what the open socket needs stays in this frame for its whole life.
    user_id, session_id, events, after_seq = admitted
    del admitted
    sockets = services().sockets
    drain = services().drain
    try:
        async with (
            services().chats.open_session(
                user_id, session_id, events=events, after_seq=after_seq
            ) as chat,
            anyio.create_task_group() as tg,
        ):
            # No writer task waits on an idle socket: one starts when there is something
            # to send (or the outbox closes) and ends once the outbox is empty.
            writer = _Writer(chat.outbox, websocket._get_current_object(), tg)
            chat.outbox.on_wake = writer.wake
            if drain is not None:
                # The writer sends what is queued, then closes the socket.
                drain.on_closed(chat.outbox, chat.outbox.close)
            try:
                writer.wake()  # what was queued while the socket opened
                await _read(chat)
            finally:
                chat.outbox.on_wake = None
                if drain is not None:
                    drain.forget_closed(chat.outbox)
    finally:
        sockets.release(user_id)


async def _admit() -> tuple[UUID, UUID, bool, int | None] | None:
    """Check the handshake; return the socket's user, session and watch options once it
    is accepted and holds a place, or None once it is closed."""
    sockets = services().sockets
    if not sockets.acquire_pending_nowait(services().settings.MAX_PENDING_HANDSHAKES):
        # Before the token is looked at: a flood of handshakes costs no database work.
        await websocket.accept()
        await websocket.close(CLOSE_TRY_AGAIN, TOO_MANY_HANDSHAKES)
        return None
    args = _query_args()
    try:
        caller = await resolve_token(args.get("token") or "", allow_agent=False)
    finally:
        sockets.release_pending()
    if caller is None:
        await websocket.close(CLOSE_POLICY, BAD_TOKEN)
        return None
    raw_session = args.get("session_id")
    try:
        session_id = UUID(raw_session) if raw_session is not None else uuid4()
    except ValueError:
        await websocket.close(CLOSE_POLICY, BAD_SESSION)
        return None
    watch = _watch_options(args.get("events"), args.get("after_seq"))
    if isinstance(watch, str):
        await websocket.close(CLOSE_POLICY, watch)
        return None
    drain = services().drain
    await websocket.accept()
    if drain is not None and drain.draining:
        await websocket.close(CLOSE_TRY_AGAIN, SERVER_STOPPING)
        return None
    if not sockets.acquire_nowait(caller.user_id, services().settings.MAX_SOCKETS_PER_USER):
        await websocket.send(_error_frame(TOO_MANY_SOCKETS))
        await websocket.close(CLOSE_TRY_AGAIN, TOO_MANY_SOCKETS)
        return None
    return caller.user_id, session_id, *watch


def _query_args() -> dict[str, str]:
    """The socket's query parameters (the first value of each), read as ``websocket.args``
    reads them but not kept: that one stays cached on the socket for its whole life."""
    found: dict[str, str] = {}
    pairs = parse_qsl(
        websocket.query_string.decode(), keep_blank_values=True, errors="werkzeug.url_quote"
    )
    for name, value in pairs:
        found.setdefault(name, value)
    return found


def _watch_options(events: str | None, after_seq: str | None) -> tuple[bool, int | None] | str:
    """Read ``events`` and ``after_seq``; return the close reason of a bad one."""
    if events not in (None, "0", "1"):
        return BAD_EVENTS
    after: int | None = None
    if after_seq is not None:
        if not after_seq.isascii() or not after_seq.isdigit() or len(after_seq) > 18:
            return BAD_AFTER_SEQ
        after = int(after_seq)
    return events == "1" or after is not None, after


async def _cancel(chat: ChatSession, request_id: UUID) -> None:
    """Cancel a turn of the socket's conversation, or say why it cannot be."""
    try:
        if await chat.cancel(request_id):
            return  # its one reply follows, as for any turn
    except ChatUnavailableError:
        chat.send_nowait(_error_frame(CHAT_UNAVAILABLE))
        return
    try:
        turn = await TurnHistory(services().sessionmaker).get_turn(chat.user_id, request_id)
    except Exception as exc:
        if not is_database_unavailable(exc):
            raise
        chat.send_nowait(_error_frame(DATABASE_UNAVAILABLE))
        return
    if turn is not None and turn.session_id == chat.session_id and turn.is_final:
        chat.send_nowait(_error_frame(TURN_FINISHED))
    else:
        chat.send_nowait(_error_frame(TURN_NOT_FOUND))


async def _read(chat: ChatSession) -> None:
    while True:
        parsed = parse_message(await websocket.receive())
        if isinstance(parsed, dict):
            # ASCII escapes: an echoed lone surrogate has no UTF-8 form to send.
            chat.send_nowait(json.dumps(parsed, default=str))
            continue
        if isinstance(parsed, CancelMessage):
            await _cancel(chat, parsed.request_id)
            continue
        if _unstorable(parsed):
            chat.send_nowait(_refusal(UNSTORABLE, chat.session_id))
            continue
        try:
            await chat.post(parsed)
        except ChatStoppingError:
            chat.send_nowait(_refusal(SHUTTING_DOWN, chat.session_id))
        except ChatBusyError:
            chat.send_nowait(_refusal(BUSY, chat.session_id))
        except ChatUnavailableError:
            # The socket stays: the next message tries to reach the chat again.
            chat.send_nowait(_refusal(CHAT_UNAVAILABLE, chat.session_id))


class _Writer:
    """The only sender on one socket, so frames leave in the order queued: a task that
    runs while the outbox has frames, started by the outbox's ``on_wake``."""

    def __init__(self, outbox: SocketOutbox, socket: Websocket, tg: TaskGroup) -> None:
        self._outbox = outbox
        # The socket itself: the task may be started from an actor's context.
        self._socket = socket
        self._tg = tg
        self._running = False
        self._closing = False

    def wake(self) -> None:
        if not self._running and not self._closing:
            self._running = True
            self._tg.start_soon(self._run)

    async def _run(self) -> None:
        outbox, socket = self._outbox, self._socket
        try:
            while (text := outbox.take_nowait()) is not None:
                await socket.send(text)
            if not outbox.closed or outbox.discarded:
                return  # idle again; the next frame starts another run
            self._closing = True
            if outbox.overflowed:
                await socket.close(CLOSE_TOO_SLOW, "Too many frames waiting. Reconnect")
            else:
                await socket.close(CLOSE_GOING_AWAY, SERVER_STOPPING)
            self._tg.cancel_scope.cancel()
        finally:
            self._running = False
