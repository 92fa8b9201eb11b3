"""The session's in-process link to the embedded router: the same frames, no socket.

When the router runs in our own process, a WebSocket to it costs a TCP connect, an HTTP
upgrade and a frame encode and decode on both ends, all on the one event loop, for every
master invocation. `LocalConnector` opens the same connections straight on the router's
hub: it identifies them from the same headers, routes the same frames through the same
routing table, as objects (no JSON is encoded and parsed again between two objects of
one process), and gets its frames through the same bounded-outbox contract (a full
outbox closes the connection). So the session behaves exactly as it does over
sockets, and an upstream router still gets real sockets (`WebSocketConnector`).
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import anyio

from actors.router import (
    ApiKeys,
    ClientKind,
    CloseConnection,
    Frame,
    OpenConnection,
    ReceiveFrame,
    identify,
)
from runtime import ActorDeadError, MailboxFullError

from ._connection import parse_object
from ._exceptions import RouterConnectionError

if TYPE_CHECKING:
    from actors.router import HubMessage
    from runtime import ActorRef

    from ._connection import RouterConnection

__all__ = ["LocalConnector"]

_OPEN_TIMEOUT = 5.0


class _Inbox:
    """The outbox the hub fills for one local connection (`actors.router.Outbox`).

    It takes the hub's frame objects as they are; only frames that are text already
    (kept while no back-end was connected) are parsed. A plain deque and an event made
    only while the reader waits: an inbox that nobody closes (its owner was cancelled
    with the tree) is just garbage, never a resource left open.
    """

    __slots__ = ("_capacity", "_closed", "_ended", "_frames", "_ready", "overflowed")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._frames: collections.deque[Frame | str] = collections.deque()
        # No frame comes any more (overflowed or closed); closed: none is read either.
        self._ended = False
        self._closed = False
        self._ready: anyio.Event | None = None
        self.overflowed = False

    def send_nowait(self, frame: Frame | str) -> bool:
        if self._ended:
            return True  # we closed it; frames still in flight to us are dropped
        if len(self._frames) >= self._capacity:
            return False
        self._frames.append(frame)
        self._wake()
        return True

    def overflow(self) -> None:
        self.overflowed = True
        self._ended = True
        self._wake()

    async def receive(self) -> Frame:
        while True:
            while not self._frames or self._closed:
                if self._ended:
                    self.close()
                    reason = "its outbox overflowed" if self.overflowed else "it is closed"
                    raise RouterConnectionError(f"local router connection lost: {reason}")
                if self._ready is None:
                    self._ready = anyio.Event()
                await self._ready.wait()
            frame = self._frames.popleft()
            if not isinstance(frame, str):
                return frame
            parsed = parse_object(frame)
            if parsed is not None:
                return parsed

    def close(self) -> None:
        self._ended = self._closed = True
        self._frames.clear()
        self._wake()

    def _wake(self) -> None:
        ready, self._ready = self._ready, None
        if ready is not None:
            ready.set()


class _LocalConnection:
    """One connection on the hub (`RouterConnection`)."""

    __slots__ = ("_closed", "_conn_id", "_hub", "_inbox")

    # No extension: a connection on the hub costs no handshake, so the session keeps
    # one per invocation, as with the original router.
    features: frozenset[str] = frozenset()

    def __init__(self, hub: ActorRef[HubMessage], conn_id: str, inbox: _Inbox) -> None:
        self._hub = hub
        self._conn_id = conn_id
        self._inbox = inbox
        self._closed = False

    async def send(self, frame: Frame) -> None:
        if self._closed or self._inbox.overflowed:
            raise RouterConnectionError("local router connection is closed")
        try:
            await self._hub.tell(ReceiveFrame(self._conn_id, frame))
        except ActorDeadError as exc:
            raise RouterConnectionError("the router is not running") from exc

    async def recv(self) -> Frame:
        return await self._inbox.receive()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.close()
        with contextlib.suppress(ActorDeadError):
            try:
                self._hub.tell_nowait(CloseConnection(self._conn_id))
            except MailboxFullError:
                await self._hub.tell(CloseConnection(self._conn_id))


class LocalConnector:
    """Open router connections directly on the embedded router's hub (`Connector`).

    Args:
        hub: Returns the hub's ref (looked up when a connection opens, so the connector
            can be built before the router starts; the ref is stable across restarts).
        keys: The router's API keys, which identify connections as sockets' headers do.
        url: The router's URL, for status and logs (its sockets serve the agents).
        capacity: Frames a connection may have queued before it is closed.
        backend_capacity: The same for the back-end's own event connection, which
            carries every agent's logs.
    """

    def __init__(
        self,
        hub: Callable[[], ActorRef[HubMessage]],
        keys: ApiKeys,
        *,
        url: str,
        capacity: int = 1000,
        backend_capacity: int = 200_000,
    ) -> None:
        self._hub = hub
        self._keys = keys
        self._url = url
        self.capacity = capacity
        self.backend_capacity = backend_capacity

    @property
    def url(self) -> str:
        return self._url

    async def connect(self, headers: Mapping[str, str]) -> RouterConnection:
        lowered = {name.lower(): value for name, value in headers.items()}
        identity = identify(lowered.get, self._keys)
        if identity is None:
            raise RouterConnectionError("the router refused the connection: no identity")
        backend = identity.kind is ClientKind.BACKEND
        inbox = _Inbox(self.backend_capacity if backend else self.capacity)
        try:
            hub = self._hub()
            conn_id: str | None = await hub.ask(
                OpenConnection(identity, inbox), timeout=_OPEN_TIMEOUT
            )
        except (LookupError, ActorDeadError, TimeoutError, MailboxFullError) as exc:
            inbox.close()
            raise RouterConnectionError(f"router connection failed: {exc!r}") from exc
        except BaseException:
            # Cancelled while the hub opened it (the tree stopping): nobody will close it.
            inbox.close()
            raise
        if conn_id is None:
            inbox.close()
            raise RouterConnectionError("the router refused the connection")
        return _LocalConnection(hub, conn_id, inbox)
