"""One WebSocket connection: identify it, then pump frames between it and the hub.

The socket's handler task reads frames and tells them to the hub. Frames for the socket
go to its :class:`ConnectionActor`, whose bounded mailbox is the connection's outbox and
whose handler writes to the socket, so a slow or dead peer delays nobody but itself. A
full outbox closes the connection with code 1013.

Nothing of a connection outlives its socket, even in a storm of closes: the actor stops
itself once its socket is closed, and the socket's outbox is released to the hub's
sweep (`Switchboard.release`) besides the close message, which may not get through.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import anyio
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.protocol import State

from runtime import Actor, ActorDeadError, MailboxFullError

from ._envelope import ErrorType, MessageType, dump_frame
from ._identity import identify

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from websockets.asyncio.server import ServerConnection

    from runtime import ActorRef, DynamicSupervisor

    from ._envelope import Frame
    from ._hub import HubMessage
    from ._identity import ApiKeys, Identity, VerifiedAgent
    from ._switchboard import Outbox

__all__ = [
    "CLOSE_INVALID_TOKEN",
    "CLOSE_MISSING_IDENTITY",
    "CLOSE_OUTBOX_OVERFLOW",
    "DEFAULT_BACKEND_OUTBOX_CAPACITY",
    "DEFAULT_OUTBOX_CAPACITY",
    "OPEN_TIMEOUT",
    "ActorOutbox",
    "ConnectionActor",
    "SendFrame",
    "serve_connection",
]

logger = logging.getLogger(__name__)

CLOSE_MISSING_IDENTITY = 4000
CLOSE_INVALID_TOKEN = 4001
INVALID_TOKEN = "Agent ID was not registered before"
"""The registry's words for a token it refuses, which the agent is sent before the close."""
CLOSE_OUTBOX_OVERFLOW = int(CloseCode.TRY_AGAIN_LATER)  # 1013
DEFAULT_OUTBOX_CAPACITY = 1000
DEFAULT_BACKEND_OUTBOX_CAPACITY = 200_000


@dataclasses.dataclass(frozen=True, slots=True)
class SendFrame:
    """Write ``frame`` to the socket (encoded here, off the hub, when it is an object)."""

    frame: Frame | str


class ConnectionActor(Actor[SendFrame]):
    """The sender of one socket; its mailbox is the socket's outbox."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws

    async def on_start(self) -> None:
        self.start_soon(self._stop_when_closed)

    async def _stop_when_closed(self) -> None:
        # Whatever happens to the socket's handler (a cleanup that timed out in a
        # storm), the sender does not outlive its socket.
        await self.ws.wait_closed()
        self.stop()

    async def handle(self, message: SendFrame) -> Any:
        frame = message.frame
        text = frame if isinstance(frame, str) else dump_frame(frame)
        # A closed socket is noticed by its reader, which removes the connection.
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(text)

    async def on_stop(self) -> None:
        if self.ws.state is State.OPEN:  # after a crash: do not leave the peer waiting
            await self.ws.close(CloseCode.INTERNAL_ERROR, "Internal error")


class ActorOutbox:
    """The outbox of a connection: its actor's mailbox, told without waiting."""

    def __init__(self, ref: ActorRef[SendFrame]) -> None:
        self.ref = ref
        self.overflowed = anyio.Event()

    def send_nowait(self, frame: Frame | str) -> bool:
        """Queue ``frame``; return ``False`` if the outbox is full or its sender is gone."""
        try:
            self.ref.tell_nowait(SendFrame(frame))
        except (MailboxFullError, ActorDeadError):
            # A sender that is gone has lost its socket: the reader removes the
            # connection; the hub must not crash on it meanwhile.
            return False
        return True

    def overflow(self) -> None:
        """Have the connection closed with code 1013 (does not wait)."""
        self.overflowed.set()


async def serve_connection(
    ws: ServerConnection,
    *,
    hub: ActorRef[HubMessage],
    connections: DynamicSupervisor,
    keys: ApiKeys,
    backend_connections: DynamicSupervisor | None = None,
    verify: Callable[[str], Awaitable[VerifiedAgent | None]] | None = None,
    release: Callable[[Outbox], None] | None = None,
) -> None:
    """Serve one accepted socket until it closes.

    A socket without an identity is closed with code 4000, reason ``"Missing
    Authorization header"``, as upstream does after accepting it. With ``verify``, an
    agent's token is checked first: an invalid one is sent the error frame that stops
    a library agent, then closed with code 4001; a socket the hub refuses
    (`RoutingTable.admit`) is closed with 4000. The back-end's own connection runs
    under ``backend_connections`` (its larger outbox) when given. ``release`` is told
    the outbox once the socket is done (`Switchboard.release`).
    """
    from ._hub import AbandonConnection, CloseConnection, OpenConnection, ReceiveFrame
    from ._identity import ClientKind

    identity = identify(ws.request.headers.get, keys) if ws.request else None
    if identity is not None and identity.kind is ClientKind.AGENT and verify is not None:
        identity = await _verified(ws, identity, verify)
        if identity is None:
            return
    if identity is None:
        await ws.close(CLOSE_MISSING_IDENTITY, "Missing Authorization header")
        return
    key = str(ws.id)
    if identity.kind is ClientKind.BACKEND and backend_connections is not None:
        connections = backend_connections
    try:
        ref = await connections.get_or_start(key, lambda: ConnectionActor(ws))
    except ActorDeadError:
        await ws.close(CloseCode.GOING_AWAY, "Router stopping")
        return
    outbox = ActorOutbox(ref)
    try:
        conn_id: str | None = await hub.ask(OpenConnection(identity, outbox), timeout=OPEN_TIMEOUT)
    except (ActorDeadError, TimeoutError):
        # The sender must not outlive its socket, and a hub that was only slow opens the
        # connection later, after our ask gave up: have it closed again once it has
        # (by the sweep, if even the abandon cannot get through).
        if release is not None:
            release(outbox)
        with contextlib.suppress(MailboxFullError, ActorDeadError):
            hub.tell_nowait(AbandonConnection(outbox))
        try:
            await ws.close(CloseCode.TRY_AGAIN_LATER, "Router busy, try again later")
        finally:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(_CLEANUP_SECONDS),
                contextlib.suppress(KeyError, ActorDeadError),
            ):
                await connections.stop_child(key)
        return
    if conn_id is None:
        # Closed first: the sender closes a socket it leaves open as after a crash.
        await ws.close(CLOSE_MISSING_IDENTITY, "Missing Authorization header")
        with contextlib.suppress(KeyError, ActorDeadError):
            await connections.stop_child(key)
        return
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_close_on_overflow, ws, outbox)
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await hub.tell(ReceiveFrame(conn_id, await ws.recv(decode=False)))
            tg.cancel_scope.cancel()
    finally:
        # Every frame this socket read is queued to the hub by now: the sweep may
        # remove the connection if the close below does not get through in time.
        if release is not None:
            release(outbox)
        # Shielded so the table is cleaned up even when the handler is cancelled, but
        # bounded: when the whole router is being torn down, the hub and the connections
        # supervisor may already be gone, and nothing would ever answer.
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLEANUP_SECONDS):
            try:
                hub.tell_nowait(CloseConnection(conn_id))
            except MailboxFullError:
                await hub.tell(CloseConnection(conn_id))
            with contextlib.suppress(KeyError, ActorDeadError):
                await connections.stop_child(key)


_CLEANUP_SECONDS = 5.0
OPEN_TIMEOUT = 5.0
"""Seconds a new socket waits for the hub to add it before it is closed with 1013."""


async def _verified(
    ws: ServerConnection,
    identity: Identity,
    verify: Callable[[str], Awaitable[VerifiedAgent | None]],
) -> Identity | None:
    """Return ``identity`` with its verified owner, or ``None`` once ``ws`` is closed."""
    assert identity.agent_jwt is not None  # an agent identity is read from its token
    agent = None
    with anyio.move_on_after(OPEN_TIMEOUT) as scope:
        agent = await verify(identity.agent_jwt)
    if scope.cancelled_caught:
        await ws.close(CloseCode.TRY_AGAIN_LATER, "Router busy, try again later")
        return None
    if agent is None:
        # The frame a library agent stops on (PROTOCOL.md §2.3), as the registry
        # sends it for a token it refuses; then the socket goes.
        error = {
            "error_message": INVALID_TOKEN,
            "error_type": str(ErrorType.AGENT_GENERAL_ERROR),
            "message_type": str(MessageType.AGENT_ERROR),
        }
        with contextlib.suppress(ConnectionClosed):
            await ws.send(dump_frame({"error": error}))
        await ws.close(CLOSE_INVALID_TOKEN, "Invalid agent token")
        return None
    # The verifier's id is the token's ``sub`` in its canonical form.
    return dataclasses.replace(identity, client_id=agent.agent_id, owner=agent.owner_id)


async def _close_on_overflow(ws: ServerConnection, outbox: ActorOutbox) -> None:
    await outbox.overflowed.wait()
    logger.warning("closing %s: its outbox is full", ws.id)
    await ws.close(CLOSE_OUTBOX_OVERFLOW, "Outbox overflow")
