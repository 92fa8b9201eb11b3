"""The HTTP face as an actor: hypercorn serving the Quart app under the supervision tree."""

from __future__ import annotations

import collections
import functools
import logging
from dataclasses import dataclass
from http import HTTPStatus
from ssl import SSLError
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import anyio
import h11
import hypercorn.asyncio.run
import hypercorn.asyncio.tcp_server
import hypercorn.protocol
from hypercorn.asyncio.run import worker_serve
from hypercorn.asyncio.task_group import TaskGroup, _handle
from hypercorn.asyncio.tcp_server import MAX_RECV, TCPServer
from hypercorn.config import Config
from hypercorn.events import Closed, RawData
from hypercorn.protocol.h11 import H11Protocol
from quart import Quart
from quart.asgi import ASGIWebsocketConnection, _normalise_path
from quart.signals import websocket_received
from werkzeug.datastructures import Headers

from runtime import Actor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from hypercorn.config import Sockets
    from hypercorn.typing import (
        AppWrapper,
        ASGIReceiveCallable,
        ASGIReceiveEvent,
        ASGISendCallable,
        ASGISendEvent,
        H11SendableEvent,
        Scope,
        WebsocketScope,
        WorkerContext,
    )
    from quart.wrappers import Websocket

__all__ = ["GetAddresses", "HttpServer", "hypercorn_config"]

logger = logging.getLogger("web.http")


def hypercorn_config(
    host: str,
    port: int,
    *,
    graceful_timeout: float = 5.0,
    max_ws_frame_bytes: int = 1024 * 1024,
) -> Config:
    """Return a hypercorn configuration that serves on ``host:port``.

    A WebSocket message larger than ``max_ws_frame_bytes`` closes its socket with
    1009 ("message too big") before the app sees it.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.graceful_timeout = graceful_timeout
    config.websocket_max_message_size = max_ws_frame_bytes
    config.accesslog = None
    # "Server: hypercorn-h11" tells an attacker what to look up; say nothing.
    config.include_server_header = False
    # Our own loggers report; hypercorn's error log would duplicate them.
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


@functools.cache
def _reason_phrase(status_code: int) -> bytes:
    try:
        return HTTPStatus(status_code).phrase.encode("ascii")
    except ValueError:
        return b""


class _ReadGate:
    """Stands for the event an HTTP/1.1 connection waits on while h11 is paused.

    h11 pauses only between a response and the next request of a keep-alive
    connection, and a WebSocket connection never again: the event (a deque and more,
    about 900 B) is made when a connection first waits, not for every connection.
    """

    __slots__ = ("_context", "_event", "_set")

    def __init__(self, context: WorkerContext) -> None:
        self._context = context
        self._event: Any = None
        self._set = False

    async def clear(self) -> None:
        self._set = False
        if self._event is not None:
            await self._event.clear()

    async def set(self) -> None:
        self._set = True
        if self._event is not None:
            await self._event.set()

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._event = self._context.event_class()
        await self._event.wait()


class _H11ProtocolWithReasons(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, sending the standard reason phrase.

    Hypercorn leaves it empty (``HTTP/1.1 401 ``), which clients print in their errors
    ("Client error '401 '") as if something were wrong with the answer itself. Its
    read gate is made when first waited on (see `_ReadGate`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.can_read = _ReadGate(self.context)  # type: ignore[assignment]

    async def _send_h11_event(self, event: H11SendableEvent) -> None:
        if isinstance(event, h11.Response | h11.InformationalResponse) and not event.reason:
            event = type(event)(
                status_code=event.status_code,
                headers=event.headers,
                reason=_reason_phrase(event.status_code),
            )
        await super()._send_h11_event(event)


class _AppEvents:
    """The ASGI events hypercorn hands one connection's app, in order, at most ``limit``
    waiting (0: no limit), as the `asyncio.Queue` it uses would.

    That queue holds three deques and an event (about 3 KB) for every connection, most
    of them idle WebSockets whose app waits for the next message: here the events'
    deque exists only while some wait, and an event only while a side waits.
    """

    __slots__ = ("_events", "_limit", "_readable", "_writable")

    def __init__(self, limit: int) -> None:
        self._events: collections.deque[ASGIReceiveEvent] | None = None
        self._limit = limit
        self._readable: anyio.Event | None = None
        self._writable: anyio.Event | None = None

    async def put(self, event: ASGIReceiveEvent) -> None:
        while self._limit > 0 and self._events is not None and len(self._events) >= self._limit:
            if self._writable is None:
                self._writable = anyio.Event()
            await self._writable.wait()
        if self._events is None:
            self._events = collections.deque()
        self._events.append(event)
        readable, self._readable = self._readable, None
        if readable is not None:
            readable.set()

    async def get(self) -> ASGIReceiveEvent:
        while not self._events:
            if self._readable is None:
                self._readable = anyio.Event()
            await self._readable.wait()
        event = self._events.popleft()
        if not self._events:
            self._events = None
        writable, self._writable = self._writable, None
        if writable is not None:
            writable.set()
        return event


class _TaskGroup(TaskGroup):
    """Hypercorn's per-connection task group, handing the app its events through
    `_AppEvents` instead of an `asyncio.Queue`."""

    async def spawn_app(
        self,
        app: AppWrapper,
        config: Config,
        scope: Scope,
        send: Callable[[ASGISendEvent | None], Awaitable[None]],
    ) -> Callable[[ASGIReceiveEvent], Awaitable[None]]:
        events = _AppEvents(config.max_app_queue_size)
        self.spawn(
            _handle,
            app,
            config,
            scope,
            events.get,
            send,
            # For a WSGI app only (its thread and its calls back into the loop); the
            # ASGI wrapper of the app served here calls neither.
            _wsgi_only,
            _wsgi_only,
        )
        return events.put


def _wsgi_only(*args: Any) -> Any:
    raise RuntimeError("only a WSGI app runs in a thread or calls back into the loop")


class _TCPServer(TCPServer):
    """Hypercorn's connection, reading without a `wait_for` frame per connection when
    no read timeout is set (as in `hypercorn_config`)."""

    async def _read_data(self) -> None:
        if self.config.read_timeout is not None:
            await super()._read_data()
            return
        while not self.reader.at_eof():
            try:
                data = await self.reader.read(MAX_RECV)
            except (ConnectionError, OSError, SSLError):
                break
            await self.protocol.handle(RawData(data))
        await self.protocol.handle(Closed())


def _send_reason_phrases() -> None:
    """Make hypercorn's connections speak HTTP/1.1 through `_H11ProtocolWithReasons`,
    and run them as `_TCPServer`s with a `_TaskGroup`.

    Hypercorn builds these by name from its modules and has no setting for them, so
    the names are pointed at the subclasses (idempotent, process-wide; HTTP/2 has no
    reason phrases).
    """
    vars(hypercorn.protocol)["H11Protocol"] = _H11ProtocolWithReasons
    vars(hypercorn.asyncio.tcp_server)["TaskGroup"] = _TaskGroup
    vars(hypercorn.asyncio.run)["TCPServer"] = _TCPServer


class _WebsocketConnection(ASGIWebsocketConnection):
    """Quart's WebSocket connection without its receiver task and queue.

    Quart reads each socket's events in a task of its own into a queue and runs the
    handler in another task: two tasks and a queue (about 8 KB) for every open socket,
    most of them idle. Here the handler reads the ASGI events itself when it asks for a
    message (ours has one reader per socket, always reading), and the client's
    disconnect cancels the handler, as Quart's does. The socket object gets bound
    methods of this connection rather than a `functools.partial` of each (0.7 KB).
    """

    def __init__(self, app: Quart, scope: WebsocketScope) -> None:
        self.app = app
        self.scope = scope
        self._accepted = False
        self._closed = False
        self._receive: ASGIReceiveCallable | None = None
        self._send: ASGISendCallable | None = None
        self._gone: anyio.CancelScope | None = None

    async def __call__(self, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        self._receive = receive
        self._send = send
        websocket: Websocket = self._create_websocket_from_scope(send)
        with anyio.CancelScope() as self._gone:
            await self.handle_websocket(websocket, send)

    def _create_websocket_from_scope(self, send: ASGISendCallable) -> Websocket:
        # As Quart's, with this connection's methods for receiving and sending.
        scope = self.scope
        headers = Headers()
        headers["Remote-Addr"] = (scope.get("client") or ["<local>"])[0]
        for name, value in scope["headers"]:
            headers.add(name.decode("latin1").title(), value.decode("latin1"))
        path = scope["path"]
        path = path if path[0] == "/" else urlparse(path).path
        root_path = scope.get("root_path", "")
        if root_path != "":
            path = _normalise_path(path, root_path)
        return self.app.websocket_class(
            path,
            scope["query_string"],
            scope["scheme"],
            headers,
            root_path,
            scope.get("http_version", "1.1"),
            list(scope.get("subprotocols", [])),
            self._next_message,
            self._send_data,
            self._accept,
            self._close,
            scope=scope,
        )

    async def _send_data(self, data: str | bytes) -> None:
        assert self._send is not None
        await self.send_data(self._send, data)

    async def _accept(self, headers: Headers, subprotocol: str | None) -> None:
        assert self._send is not None
        await self.accept_connection(self._send, headers, subprotocol)

    async def _close(self, code: int, reason: str) -> None:
        assert self._send is not None
        await self.close_connection(self._send, code, reason)

    async def _next_message(self) -> str | bytes:
        assert self._receive is not None and self._gone is not None
        while True:
            event = await self._receive()
            if event["type"] == "websocket.receive":
                message: str | bytes = event.get("bytes") or event["text"]  # type: ignore[typeddict-item]
                await websocket_received.send_async(message)
                return message
            if event["type"] == "websocket.disconnect":
                self._gone.cancel()
                await anyio.sleep_forever()  # cancelled at once


class _AppWrapper:
    """Hypercorn's wrapper of the ASGI app, handing a WebSocket straight to the app's
    connection class, as Quart's `asgi_app` does, with no coroutine of its own: each
    open socket keeps three frames fewer (hypercorn's wrapper, Quart's ``__call__`` and
    ``asgi_app``, 0.7 KB). An app whose ``asgi_app`` was replaced (a middleware) is
    called as usual."""

    __slots__ = ("_app", "_direct")

    def __init__(self, app: Quart) -> None:
        self._app = app
        self._direct = getattr(app.asgi_app, "__func__", None) is Quart.asgi_app

    def __call__(
        self,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        sync_spawn: Callable[..., Any],
        call_soon: Callable[..., Any],
    ) -> Coroutine[Any, Any, None]:
        app = self._app
        if self._direct and scope["type"] == "websocket":
            return app.asgi_websocket_class(app, scope)(receive, send)
        return app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class GetAddresses:
    """Ask for the ``(host, port)`` pairs the server listens on."""


class HttpServer(Actor[GetAddresses]):
    """Serve `app` with hypercorn for as long as the actor runs.

    The sockets are bound in `on_start`, so a taken port fails the start (and
    reaches whoever started the tree) instead of failing later in the background.
    Stopping the actor shuts hypercorn down gracefully: open requests and
    WebSockets get `graceful_timeout` to finish.

    Args:
        app: The Quart app.
        config: Hypercorn's configuration (see `hypercorn_config`).
    """

    def __init__(self, app: Quart, config: Config) -> None:
        # Served sockets are read without Quart's task and queue each.
        app.asgi_websocket_class = _WebsocketConnection
        self.app = app
        self.config = config
        self.addresses: list[tuple[str, int]] = []
        self._shutdown = anyio.Event()
        self._finished = anyio.Event()

    async def on_start(self) -> None:
        _send_reason_phrases()
        sockets = self.config.create_sockets()
        for sock in sockets.insecure_sockets:
            # Listen now: connections made before hypercorn's loop takes the socket over
            # wait in the backlog instead of being refused.
            sock.listen(self.config.backlog)
        self.addresses = [sock.getsockname()[:2] for sock in sockets.insecure_sockets]
        self.start_soon(self._serve, sockets)

    async def _serve(self, sockets: Sockets) -> None:
        try:
            await worker_serve(
                _AppWrapper(self.app),
                self.config,
                sockets=sockets,
                shutdown_trigger=self._shutdown.wait,
            )
        finally:
            self._finished.set()
        if not self._shutdown.is_set():
            raise RuntimeError("the HTTP server stopped by itself")

    async def handle(self, message: GetAddresses) -> list[tuple[str, int]]:
        return list(self.addresses)

    async def on_stop(self) -> None:
        self._shutdown.set()
        with anyio.move_on_after(self.config.graceful_timeout + 1):
            await self._finished.wait()
