"""The router session: the back-end's own connection to the router, as ``master_server_be``.

It receives the agent events the router forwards (PROTOCOL.md §4) and tells them to the
registry, and it invokes the master agent for the chat actors. Each invocation uses a
short-lived socket whose ``x-custom-invoke-key`` is unique per request, so replies never
mix, with the embedded router and an upstream one alike (PROTOCOL.md §1.5, §5 step 2).

Lifecycle: the session connects in a task of its own after ``on_start``, so a router
that is down never keeps the server from starting. While that first connect is under
way, invocations wait (stashed) for at most their accept timeout; a failed connect or a
dropped connection crashes the session, which fails every invocation in flight with
`RouterUnavailableError` at once, and its supervisor restarts it with backoff. Place it
with `router_session_spec`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import anyio

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
    "MASTER_AGENT_ID",
    "GetStatus",
    "InvokeMaster",
    "MasterReply",
    "NotifyAgent",
    "PendingCall",
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
# The client waits this much past the deadline for the session's own timeout verdict.
_DEADLINE_GRACE = 0.5


@dataclasses.dataclass(frozen=True, slots=True)
class SessionConfig:
    """Where the router is and how we identify to it.

    Attributes:
        url: The router's WebSocket URL (``ROUTER_WS_URL``, or the embedded router's).
        api_key: ``MASTER_BE_API_KEY``, sent as ``API-KEY``; it makes us ``master_server_be``.
        open_timeout: Seconds allowed to open a socket.
        ping_interval: Seconds between pings on the main socket (None: off).
    """

    url: str
    api_key: str
    open_timeout: float = 5.0
    ping_interval: float | None = 20.0


@dataclasses.dataclass(frozen=True, slots=True)
class MasterReply:
    """What the master agent answered: its ``response`` and ``execution_time`` (seconds)."""

    response: Any
    execution_time: float


@dataclasses.dataclass(frozen=True, slots=True)
class SessionStatus:
    """A snapshot of the session.

    Attributes:
        connected: Whether the main socket is open.
        url: The router's URL.
        connects: Successful connects so far (by this actor's instances).
        in_flight: Invocations waiting for a reply.
        invocations: Invocations started so far by this instance.
        events: Agent events told to the registry by this instance.
    """

    connected: bool
    url: str
    connects: int = 0
    in_flight: int = 0
    invocations: int = 0
    events: int = 0


# -- messages ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class InvokeMaster:
    """Start an invocation of the master (ask: a `PendingCall`, or the error at once).

    ``deadline`` and ``accept_by`` are on the ``anyio.current_time()`` clock; a request
    still queued after ``accept_by`` (its caller has given up) is dropped.
    """

    payload: Mapping[str, Any]
    request_id: str
    session_id: str
    timeout: float
    deadline: float
    accept_by: float


@dataclasses.dataclass(frozen=True, slots=True)
class NotifyAgent:
    """Send an agent the protocol's error frame, which makes it stop (PROTOCOL.md §4)."""

    agent_uuid: str
    error_message: str
    error_type: str = "AgentGeneralError"


@dataclasses.dataclass(frozen=True, slots=True)
class GetStatus:
    """Ask for a `SessionStatus`."""


SessionMessage = InvokeMaster | NotifyAgent | GetStatus


class PendingCall:
    """One invocation in flight; the caller waits on it, the session resolves it."""

    __slots__ = ("_done", "_error", "_reply", "scope")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._reply: MasterReply | None = None
        self._error: MasterAgentError | None = None
        self.scope = anyio.CancelScope()
        """The scope the session runs the invocation in; cancelling it stops the work."""

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def resolve(self, reply: MasterReply) -> None:
        if not self._done.is_set():
            self._reply = reply
            self._done.set()

    def fail(self, error: MasterAgentError) -> None:
        if not self._done.is_set():
            self._error = error
            self._done.set()

    def abandon(self) -> None:
        """Stop the work if it is still running (the caller gave up; does not wait)."""
        if not self._done.is_set():
            self.scope.cancel()

    async def wait(self) -> MasterReply:
        """Wait for the outcome.

        Raises:
            MasterAgentError: The invocation failed.
        """
        await self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._reply is not None
        return self._reply


# -- the actor -------------------------------------------------------------------


class RouterSession(Actor[SessionMessage]):
    """Hold the ``master_server_be`` connection; forward agent events; invoke the master.

    Args:
        config: Router URL and API key.
        events: Where agent events go: a ref, a registry path resolved at start
            (e.g. ``"registry"``), or None to drop them.
        connector: Opens sockets (default: the ``websockets`` client).
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
        self._connecting = False
        self._closing = False
        self._calls: set[PendingCall] = set()
        self._status = SessionStatus(connected=False, url=config.url)
        self._forwarded = 0

    # -- lifecycle -----------------------------------------------------------------

    async def on_start(self) -> None:
        spec = self._events_spec
        self._events = self.system.ref_of(spec) if isinstance(spec, str) else spec
        # Connecting is not part of the synchronous start: a router that is down must
        # not fail the server's start; the task's failure crashes us into a backoff.
        self._connecting = True
        self.start_soon(self._run_main, name=f"{self.name} main socket")

    async def on_stop(self) -> None:
        self._closing = True
        self._connecting = False
        self._status = dataclasses.replace(self._status, connected=False)
        for call in list(self._calls):
            call.fail(RouterUnavailableError())
        self._calls.clear()
        if self._main is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                await self._main.aclose()
            self._main = None

    # -- messages ------------------------------------------------------------------

    async def handle(self, message: SessionMessage) -> Any:
        match message:
            case InvokeMaster():
                return self._start_invoke(message)
            case NotifyAgent(agent_uuid, error_message, error_type):
                if self._status.connected:
                    self.start_soon(self._notify, agent_uuid, error_message, error_type)
            case GetStatus():
                return dataclasses.replace(
                    self._status, in_flight=len(self._calls), events=self._forwarded
                )
        return None

    def _start_invoke(self, message: InvokeMaster) -> PendingCall | MasterAgentError | None:
        if anyio.current_time() > message.accept_by:
            return None  # the caller has given up already
        if not self._status.connected:
            if self._connecting:
                try:
                    self.stash()  # handled again once connected (or dropped if too late)
                except MailboxFullError:
                    return RouterUnavailableError()
                return None
            return RouterUnavailableError()
        call = PendingCall()
        self._calls.add(call)
        self.start_soon(self._invoke, call, message)
        self._status = dataclasses.replace(self._status, invocations=self._status.invocations + 1)
        return call

    # -- tasks -----------------------------------------------------------------------

    async def _run_main(self) -> None:
        """Connect, then read the main socket until it drops (a drop crashes the session)."""
        conn = await self.connector.connect({"API-KEY": self.config.api_key})
        self._main = conn
        self._connecting = False
        self._status = dataclasses.replace(
            self._status, connected=True, connects=self._status.connects + 1
        )
        logger.info("connected to the router at %s", self.config.url)
        self.unstash_all()
        try:
            await self._read(conn)
        except RouterConnectionError:
            if self._closing:
                return  # on_stop closed it
            self._status = dataclasses.replace(self._status, connected=False)
            logger.warning("router session lost: %s", self.config.url)
            raise

    async def _read(self, conn: RouterConnection) -> None:
        while True:
            data = await conn.recv()
            event = parse_forward(data)
            if event is None:
                logger.debug("ignored frame from the router: %.200s", data)
                continue
            if self._events is not None:
                await self._events.tell(event)
                self._forwarded += 1

    async def _invoke(self, call: PendingCall, message: InvokeMaster) -> None:
        try:
            with call.scope, anyio.fail_after(max(0.0, message.deadline - anyio.current_time())):
                reply = await self._exchange(call, message)
            if call.scope.cancelled_caught:
                return  # abandoned by its caller
        except TimeoutError:
            call.fail(MasterTimeoutError(message.timeout))
        except RouterConnectionError as exc:
            error = RouterUnavailableError()
            error.__cause__ = exc
            call.fail(error)
        except MasterAgentError as exc:
            call.fail(exc)
        except Exception as exc:  # a bad request is the caller's reply, never our crash
            logger.exception("invoking the master failed")
            call.fail(MasterFailedError(f"Invalid master request: {exc}"))
        else:
            call.resolve(reply)
        finally:
            self._calls.discard(call)

    async def _exchange(self, call: PendingCall, message: InvokeMaster) -> MasterReply:
        frame = {
            "message_type": "agent_invoke",
            "agent_uuid": MASTER_AGENT_ID,
            "request_payload": dict(message.payload),
            "request_metadata": {
                "request_id": message.request_id,
                "session_id": message.session_id,
            },
        }
        text = json.dumps(frame)
        conn = await self.connector.connect({"x-custom-invoke-key": self._invoke_key()})
        try:
            await conn.send(text)
            while True:
                reply = _master_reply(await conn.recv())
                if reply is not None:
                    call.resolve(reply)  # before the closing handshake, which is not its business
                    return reply
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                await conn.aclose()

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
                await conn.send(json.dumps(frame))
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


def _master_reply(data: str) -> MasterReply | None:
    """Read one frame on an invoke socket: the reply, an error (raised), or None (skip)."""
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    if not isinstance(frame, dict):
        return None
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
        accept_timeout: How long the session may take to accept a request; a
            session that is down (restarting) gives `RouterUnavailableError` then.
    """

    def __init__(self, ref: ActorRef[SessionMessage], *, accept_timeout: float = 1.0) -> None:
        self.ref = ref
        self.accept_timeout = accept_timeout

    async def invoke_master(
        self,
        payload: Mapping[str, Any],
        *,
        request_id: str,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the contract
    ) -> MasterReply:
        """Invoke the master agent and wait for its reply, at most ``timeout`` seconds.

        Raises:
            MasterNotActiveError: The master agent is not connected.
            MasterFailedError: It answered with an error.
            MasterTimeoutError: No answer within ``timeout``.
            RouterUnavailableError: The session is not connected, or dropped.
        """
        now = anyio.current_time()
        accept = min(self.accept_timeout, timeout)
        request = InvokeMaster(
            payload, request_id, session_id, timeout, now + timeout, now + accept
        )
        try:
            answer = await self.ref.ask(request, timeout=accept)
        except (TimeoutError, ActorDeadError, MailboxFullError) as exc:
            if anyio.current_time() >= now + timeout:
                raise MasterTimeoutError(timeout) from exc
            raise RouterUnavailableError() from exc
        if isinstance(answer, MasterAgentError):
            raise answer
        if not isinstance(answer, PendingCall):
            raise RouterUnavailableError()
        try:
            remaining = now + timeout - anyio.current_time()
            with anyio.fail_after(max(0.0, remaining) + _DEADLINE_GRACE):
                return await answer.wait()
        except TimeoutError:
            raise MasterTimeoutError(timeout) from None
        finally:
            answer.abandon()

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

    Args:
        config: Router URL and API key.
        events: The registry's ref or path (default ``"registry"``).
        connector: Opens sockets (default: the ``websockets`` client).
        name: The child's name.
        backoff: Restart backoff (default 0.2 s doubling to 30 s, with jitter).
    """

    def factory() -> RouterSession:
        return RouterSession(config, events=events, connector=connector)

    return ChildSpec(
        name,
        factory,
        backoff=backoff or Backoff(initial=0.2, maximum=30.0),
        capacity=10_000,
        shutdown=3.0,
    )
