"""The router session: the back-end's own connection to the router, as ``master_server_be``.

It receives the agent events the router forwards (PROTOCOL.md §4) and tells them to the
registry, and it invokes the master agent for the chat actors. Against a router of ours
reached over a socket (its handshake names the ``correlation`` extension), every
invocation travels on the main connection with a ``correlation_id`` of its own, and the
reader hands each reply that carries one to its call: no handshake per turn. Otherwise
(an upstream router, or the embedded one through its in-process links, which cost no
handshake) each invocation uses a short-lived connection whose ``x-custom-invoke-key`` is
unique per request, so replies never mix (PROTOCOL.md §1.5, §5 step 2).

Invocations are messages both ways: `InvokeMaster` names the actor its outcome goes to,
and the session tells that actor exactly one `MasterReplied` (the reply, or the error
whose ``str()`` is the user's text), unless the session itself goes down, which the
caller learns from the runtime's ``Down`` (it watches the session). The deadline is
the session's: one cancel scope per invocation.

A router that is down is not a crash: the session connects in a task of its own, so a
router that is down never keeps the server from starting, and it reconnects with a
doubling pause, spending no restarts of its supervisor. While an attempt is under way
invocations wait (stashed); while the router is down they fail at once with
`RouterUnavailableError`, and a dropped connection fails the invocations in flight at
once. Place it with `router_session_spec`.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

from actors.router import CORRELATION_FEATURE, CORRELATION_ID
from runtime import Actor, ActorDeadError, ActorRef, Backoff, ChildSpec, MailboxFullError

from ._connection import WebSocketConnector
from ._events import AgentEvent, parse_forward
from ._exceptions import (
    MasterAgentError,
    MasterFailedError,
    MasterNotActiveError,
    MasterTimeoutError,
    RouterConnectionError,
    RouterUnavailableError,
)

if TYPE_CHECKING:
    from ._connection import Connector, RouterConnection

__all__ = [
    "DEFAULT_RECONNECT",
    "MASTER_AGENT_ID",
    "CancelInvoke",
    "GetStatus",
    "InvokeMaster",
    "MasterReplied",
    "MasterReply",
    "NotifyAgent",
    "RouterSession",
    "RouterSessionClient",
    "SessionConfig",
    "SessionMessage",
    "SessionStatus",
    "router_session_spec",
]

logger = logging.getLogger(__name__)

MASTER_AGENT_ID = "master_server_ml"
_CLOSE_GRACE = 1.0

DEFAULT_RECONNECT = Backoff(initial=0.2, maximum=10.0)
"""The pause between attempts to reach a router that is down (doubling, with jitter)."""


@dataclasses.dataclass(frozen=True, slots=True)
class SessionConfig:
    """Where the router is and how we identify to it.

    Attributes:
        url: The router's WebSocket URL (``ROUTER_WS_URL``, or the embedded router's).
        api_key: ``MASTER_BE_API_KEY``, sent as ``API-KEY``; it makes us ``master_server_be``.
        open_timeout: Seconds allowed to open a socket.
        ping_interval: Seconds between pings on the main socket (None: off).
        reconnect: The pause between attempts while the router is down; an attempt
            right after a drop is made at once.
    """

    url: str
    api_key: str
    open_timeout: float = 5.0
    ping_interval: float | None = 20.0
    reconnect: Backoff = DEFAULT_RECONNECT


@dataclasses.dataclass(frozen=True, slots=True)
class MasterReply:
    """What the master agent answered: its ``response`` and ``execution_time`` (seconds)."""

    response: Any
    execution_time: float


@dataclasses.dataclass(frozen=True, slots=True)
class SessionStatus:
    """A snapshot of the session.

    Attributes:
        connected: Whether the main connection is open.
        url: The router's URL.
        connects: Successful connects so far (by this actor's instances).
        in_flight: Invocations waiting for a reply.
        invocations: Invocations started so far by this instance.
        events: Agent events told to the registry by this instance.
        last_error: Why the last attempt to connect failed, while the router is down.
    """

    connected: bool
    url: str
    connects: int = 0
    in_flight: int = 0
    invocations: int = 0
    events: int = 0
    last_error: str | None = None


# -- messages ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MasterReplied:
    """The outcome of one `InvokeMaster`, told to its ``reply_to``.

    Attributes:
        request_id: The invocation's ``request_id``.
        outcome: The master's reply, or the error whose ``str()`` is the user's text.
    """

    request_id: str
    outcome: MasterReply | MasterAgentError


@dataclasses.dataclass(frozen=True, slots=True)
class InvokeMaster:
    """Invoke the master; exactly one `MasterReplied` goes to ``reply_to``.

    ``deadline`` is on the ``anyio.current_time()`` clock; ``timeout`` is the figure
    the user reads when it passes.
    """

    payload: Mapping[str, Any]
    request_id: str
    session_id: str
    timeout: float
    deadline: float
    reply_to: ActorRef[MasterReplied]


@dataclasses.dataclass(frozen=True, slots=True)
class CancelInvoke:
    """Stop the invocation ``request_id``: its caller has moved on and wants no reply."""

    request_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class NotifyAgent:
    """Send an agent the protocol's error frame, which makes it stop (PROTOCOL.md §4)."""

    agent_uuid: str
    error_message: str
    error_type: str = "AgentGeneralError"


@dataclasses.dataclass(frozen=True, slots=True)
class GetStatus:
    """Ask for a `SessionStatus`."""


SessionMessage = InvokeMaster | CancelInvoke | NotifyAgent | GetStatus


class _Link(enum.Enum):
    """The state of the main connection."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DOWN = "down"
    CLOSING = "closing"


class _Call:
    """One invocation in flight: its request and the one scope that owns its deadline."""

    __slots__ = ("dropped", "request", "scope", "withdrawn")

    def __init__(self, request: InvokeMaster) -> None:
        self.request = request
        self.scope = anyio.CancelScope(deadline=request.deadline)
        self.withdrawn = False
        """Cancelled by its caller: no reply."""
        self.dropped = False
        """Cancelled because the main connection dropped: the router is unavailable."""


class _Pending:
    """Where the main connection's reader puts the frames that answer one correlated call."""

    __slots__ = ("arrived", "frames")

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self.arrived = anyio.Event()

    def put(self, frame: dict[str, Any]) -> None:
        self.frames.append(frame)
        self.arrived.set()

    async def get(self) -> dict[str, Any]:
        while not self.frames:
            await self.arrived.wait()
            self.arrived = anyio.Event()
        return self.frames.pop(0)


# -- the actor -------------------------------------------------------------------


class RouterSession(Actor[SessionMessage]):
    """Hold the ``master_server_be`` connection; forward agent events; invoke the master.

    Args:
        config: Router URL, API key and reconnect pause.
        events: Where agent events go: a ref, a registry path resolved at start
            (e.g. ``"registry"``), or None to drop them.
        connector: Opens connections (default: the ``websockets`` client).
    """

    def __init__(
        self,
        config: SessionConfig,
        *,
        events: ActorRef[AgentEvent] | str | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.config = config
        self._events_spec = events
        self._events: ActorRef[AgentEvent] | None = None
        self.connector: Connector = connector or WebSocketConnector(
            config.url, open_timeout=config.open_timeout, ping_interval=config.ping_interval
        )
        self._main: RouterConnection | None = None
        self._link = _Link.CONNECTING
        self._calls: dict[str, _Call] = {}
        # Correlated calls on the main connection waiting for their reply, by id.
        self._pending: dict[str, _Pending] = {}
        self._correlations = itertools.count(1)
        self._status = SessionStatus(connected=False, url=config.url)
        self._forwarded = 0

    # -- lifecycle -----------------------------------------------------------------

    async def on_start(self) -> None:
        spec = self._events_spec
        self._events = self.system.ref_of(spec) if isinstance(spec, str) else spec
        # Connecting is not part of the synchronous start: a router that is down must
        # not fail the server's start.
        self.start_soon(self._keep_connected, name=f"{self.name} main connection")

    async def on_stop(self) -> None:
        # The calls in flight get no reply: their callers watch us and get Down.
        self._link = _Link.CLOSING
        self._status = dataclasses.replace(self._status, connected=False)
        if self._main is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                await self._main.aclose()
            self._main = None

    # -- messages ------------------------------------------------------------------

    async def handle(self, message: SessionMessage) -> Any:
        match message:
            case InvokeMaster():
                self._start_invoke(message)
            case CancelInvoke(request_id):
                call = self._calls.get(request_id)
                if call is not None:
                    call.withdrawn = True
                    call.scope.cancel()
            case NotifyAgent(agent_uuid, error_message, error_type):
                if self._link is _Link.CONNECTED:
                    self.start_soon(self._notify, agent_uuid, error_message, error_type)
            case GetStatus():
                return dataclasses.replace(
                    self._status, in_flight=len(self._calls), events=self._forwarded
                )
        return None

    def _start_invoke(self, message: InvokeMaster) -> None:
        if self._link is _Link.CONNECTING:
            try:
                self.stash()  # handled again once the attempt has succeeded or failed
            except MailboxFullError:
                _reply_nowait(message, RouterUnavailableError())
            return
        if self._link is not _Link.CONNECTED:
            _reply_nowait(message, RouterUnavailableError())
            return
        call = _Call(message)
        self._calls[message.request_id] = call
        self.start_soon(self._invoke, call)
        self._status = dataclasses.replace(self._status, invocations=self._status.invocations + 1)

    # -- the main connection -----------------------------------------------------------

    async def _keep_connected(self) -> None:
        """Connect, read until the connection drops, and again; pause while it fails."""
        attempt = 0
        while True:
            self._link = _Link.CONNECTING
            try:
                conn = await self.connector.connect({"API-KEY": self.config.api_key})
            except RouterConnectionError as exc:
                self._went_down(exc, first=attempt == 0)
                await anyio.sleep(self.config.reconnect.delay(attempt))
                attempt += 1
                continue
            attempt = 0
            self._came_up(conn)
            try:
                await self._read(conn)
            except RouterConnectionError as exc:
                if self._link is _Link.CLOSING:
                    return  # on_stop closed it
                self._main = None
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                    await conn.aclose()
                self._went_down(exc, first=True)

    def _came_up(self, conn: RouterConnection) -> None:
        self._main = conn
        self._link = _Link.CONNECTED
        self._status = dataclasses.replace(
            self._status, connected=True, connects=self._status.connects + 1, last_error=None
        )
        logger.info("connected to the router at %s", self.config.url)
        self.unstash_all()

    def _went_down(self, error: RouterConnectionError, *, first: bool) -> None:
        was_connected = self._status.connected
        self._link = _Link.DOWN
        self._status = dataclasses.replace(self._status, connected=False, last_error=str(error))
        if was_connected:
            logger.warning("router session lost: %s (%s)", self.config.url, error)
        elif first:
            logger.warning("router unreachable at %s: %s; retrying", self.config.url, error)
        # Every call in flight went through the router that dropped us.
        for call in self._calls.values():
            call.dropped = True
            call.scope.cancel()
        # What waited for this attempt is answered now: the router is unavailable.
        self.unstash_all()

    async def _read(self, conn: RouterConnection) -> None:
        while True:
            frame = await conn.recv()
            correlation_id = frame.get(CORRELATION_ID)
            if isinstance(correlation_id, str):
                pending = self._pending.get(correlation_id)
                if pending is not None:
                    pending.put(frame)
                else:  # its call has ended (withdrawn, timed out): nobody wants it
                    logger.debug("dropped a late reply: %.200r", frame)
                continue
            event = parse_forward(frame)
            if event is None:
                logger.debug("ignored frame from the router: %.200r", frame)
                continue
            if self._events is not None:
                await self._events.tell(event)
                self._forwarded += 1

    # -- invocations -----------------------------------------------------------------

    async def _invoke(self, call: _Call) -> None:
        request = call.request
        outcome: MasterReply | MasterAgentError | None = None
        try:
            with call.scope:
                outcome = await self._exchange(request)
        except RouterConnectionError as exc:
            outcome = RouterUnavailableError()
            outcome.__cause__ = exc
        except MasterAgentError as exc:
            outcome = exc
        except Exception as exc:  # a bad request is the caller's reply, never our crash
            logger.exception("invoking the master failed")
            outcome = MasterFailedError(f"Invalid master request: {exc}")
        finally:
            del self._calls[request.request_id]
        if outcome is None:
            if call.withdrawn:
                return
            if call.dropped:
                outcome = RouterUnavailableError()
            else:
                outcome = MasterTimeoutError(request.timeout)
        await _reply(request, outcome)

    async def _exchange(self, request: InvokeMaster) -> MasterReply:
        frame = {
            "message_type": "agent_invoke",
            "agent_uuid": MASTER_AGENT_ID,
            "request_payload": dict(request.payload),
            "request_metadata": {
                "request_id": request.request_id,
                "session_id": request.session_id,
            },
        }
        main = self._main
        if main is not None and CORRELATION_FEATURE in main.features:
            return await self._exchange_correlated(main, frame)
        conn = await self.connector.connect({"x-custom-invoke-key": self._invoke_key()})
        try:
            await conn.send(frame)
            while True:
                reply = _master_reply(await conn.recv())
                if reply is not None:
                    return reply
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                await conn.aclose()

    async def _exchange_correlated(
        self, main: RouterConnection, frame: dict[str, Any]
    ) -> MasterReply:
        """Invoke on the main connection and wait for the reply its reader hands over.

        The call's scope (deadline, withdrawal, the main connection dropping) ends the
        wait; the reply that comes after is dropped by the reader.
        """
        # Unique on this connection for the session's life, which is all the router asks.
        correlation_id = str(next(self._correlations))
        pending = self._pending[correlation_id] = _Pending()
        try:
            frame[CORRELATION_ID] = correlation_id
            await main.send(frame)
            while True:
                reply = _master_reply(await pending.get())
                if reply is not None:
                    return reply
        finally:
            del self._pending[correlation_id]

    async def _notify(self, agent_uuid: str, error_message: str, error_type: str) -> None:
        frame = {
            "message_type": "agent_invoke",
            "agent_uuid": agent_uuid,
            "request_payload": {"error_message": error_message, "error_type": error_type},
            "request_metadata": {"request_id": "", "session_id": ""},
        }
        try:
            conn = await self.connector.connect(
                {"x-custom-invoke-key": self._invoke_key(agent_uuid)}
            )
            try:
                await conn.send(frame)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                    await conn.aclose()
        except RouterConnectionError as exc:
            logger.warning("could not notify agent %s: %r", agent_uuid, exc)

    def _invoke_key(self, target: str = MASTER_AGENT_ID) -> str:
        # Starts with the back-end key (the router lets only us invoke the master and
        # push errors) and is unique, so an upstream router never overwrites one of our
        # sockets with another (PROTOCOL.md §1.5).
        return f"{self.config.api_key}:{uuid.uuid4().hex}:{target}"


async def _reply(request: InvokeMaster, outcome: MasterReply | MasterAgentError) -> None:
    # A caller that has stopped turns the reply into a dead letter, which is all it is.
    try:
        await request.reply_to.tell(MasterReplied(request.request_id, outcome))
    except MailboxFullError:
        logger.warning("the reply to %s was refused: its mailbox is full", request.request_id)


def _reply_nowait(request: InvokeMaster, outcome: MasterAgentError) -> None:
    try:
        request.reply_to.tell_nowait(MasterReplied(request.request_id, outcome))
    except MailboxFullError:
        logger.warning("the reply to %s was refused: its mailbox is full", request.request_id)


def _master_reply(frame: Mapping[str, Any]) -> MasterReply | None:
    """Read one frame on an invoke socket: the reply, an error (raised), or None (skip)."""
    kind = frame.get("message_type")
    if kind == "agent_response":
        return MasterReply(frame.get("response"), _seconds(frame.get("execution_time")))
    error = frame.get("error")
    if kind == "agent_error" or isinstance(error, dict):
        # Upstream sends some refusals without message_type; the library would wait
        # for ever on them, we report them.
        details = error if isinstance(error, dict) else {}
        text = details.get("error_message")
        if details.get("error_type") == "AgentNotActive" or text == "Agent is NOT active":
            raise MasterNotActiveError()
        raise MasterFailedError(str(text) if text else "Master agent failed")
    return None


def _seconds(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# -- client and spec -----------------------------------------------------------------


class RouterSessionClient:
    """The typed client of `RouterSession`, for the chat actors and the registry.

    Args:
        ref: The session's ref (stable across its restarts).
    """

    def __init__(self, ref: ActorRef[SessionMessage]) -> None:
        self.ref = ref

    async def invoke_master(
        self,
        payload: Mapping[str, Any],
        *,
        request_id: str,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the contract
        reply_to: ActorRef[MasterReplied],
    ) -> None:
        """Start invoking the master agent; does not wait for its reply.

        ``reply_to`` gets exactly one `MasterReplied` (the reply, or a
        `MasterAgentError` whose ``str()`` is the user's text; `MasterTimeoutError`
        once ``timeout`` seconds have passed), unless the session goes down first:
        watch `ref` to learn it.

        Raises:
            RouterUnavailableError: The session is not running or cannot take it.
        """
        deadline = anyio.current_time() + timeout
        request = InvokeMaster(payload, request_id, session_id, timeout, deadline, reply_to)
        if not self.ref.is_alive:
            raise RouterUnavailableError()
        try:
            self.ref.tell_nowait(request)
        except MailboxFullError as exc:
            raise RouterUnavailableError() from exc

    def cancel_master(self, request_id: str) -> None:
        """Stop the invocation ``request_id``; no reply follows. Does not wait."""
        try:
            self.ref.tell_nowait(CancelInvoke(request_id))
        except MailboxFullError:
            logger.warning("could not cancel invocation %s: the session is busy", request_id)

    async def notify_agent(
        self, agent_uuid: str, error_message: str, error_type: str = "AgentGeneralError"
    ) -> None:
        """Have the session send an agent the error frame that stops it (does not wait for it)."""
        await self.ref.tell(NotifyAgent(agent_uuid, error_message, error_type))

    async def status(self, *, timeout: float = 1.0) -> SessionStatus:  # noqa: ASYNC109
        """Return the session's status; a session that does not answer is not connected."""
        try:
            status: SessionStatus = await self.ref.ask(GetStatus(), timeout=timeout)
        except (TimeoutError, ActorDeadError):
            return SessionStatus(connected=False, url="")
        return status


def router_session_spec(
    config: SessionConfig,
    *,
    events: ActorRef[AgentEvent] | str | None = "registry",
    connector: Connector | None = None,
    name: str = "session",
    backoff: Backoff | None = None,
) -> ChildSpec:
    """Return the child spec of a `RouterSession`: permanent, restarted with backoff.

    A router that is down does not crash the session (it reconnects by itself with
    ``config.reconnect``); the restart backoff is for crashes, which are bugs.

    Args:
        config: Router URL, API key and reconnect pause.
        events: The registry's ref or path (default ``"registry"``).
        connector: Opens sockets (default: the ``websockets`` client).
        name: The child's name.
        backoff: Restart backoff (default 0.2 s doubling to 5 s, with jitter): only
            crashes restart the session, a router that is down is waited for inside.
    """

    def factory() -> RouterSession:
        return RouterSession(config, events=events, connector=connector)

    return ChildSpec(
        name,
        factory,
        backoff=backoff or Backoff(initial=0.2, maximum=5.0),
        capacity=10_000,
        shutdown=3.0,
    )
