"""The routing table: pure state transitions of the router, with no I/O.

Each socket is a *connection* with a unique id, ``"<client id>#<n>"``. That id is the
``invoked_by`` the router stamps on invocations, so two sockets with the same client id
(two ``send()`` calls from one caller to one target, or an agent that reconnects) never
take each other's replies. A client id maps to its most recent connection; a connection
that closes removes the mapping only if it still owns it.

Every transition returns the frames to deliver, as :class:`Deliver` values, for the
caller to hand to the connections' outboxes.

A table that authenticates (the embedded router, which verifies agent tokens before it
opens their connections) also enforces who may do what:

- only verified agents, the masters and ``send()`` sockets of a master key or of a
  connected verified agent are admitted (:meth:`RoutingTable.admit`);
- an agent is invoked only by its owner's agents or by a master key, which acts for
  every user (another user's agent looks not active);
- only verified agents log, each within its :class:`~._budget.LogLimits`.

In every table, a reply reaches only a connection that invoked its sender and still
waits for it, and only the oldest live back-end connection receives the agents' events:
a later one waits, as a standby, until it closes (then it is sent what the first one
missed, as a back-end that reconnects is).

Correlated invocations (our extension, between our router and our back-ends only): an
``agent_invoke`` from a back-end connection that carries ``"correlation_id": "<str>"``
is forwarded without it, with an ``invoked_by`` of its own,
``"<conn id>~<correlation id>"``; every frame that answers it (the callee's reply, the
router's refusal, "Agent has been unregistered" when the callee goes) reaches the
back-end with the ``correlation_id`` added back. So one back-end connection carries any
number of calls at once, where the protocol needs a socket per call. The callee sees an
ordinary invocation: ``invoked_by`` is opaque to agents, which echo it back.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ._budget import LogBudget, LogLimits
from ._envelope import (
    AGENT_NOT_ACTIVE,
    AGENT_UNREGISTERED,
    ErrorType,
    Frame,
    MessageType,
    agent_error,
    dump_frame,
    parse_frame,
    router_error,
)
from ._exceptions import FrameTooLargeError, InvalidFrameError
from ._identity import MASTER_SERVER_BE, MASTER_SERVER_ML, ApiKeys, ClientKind

if TYPE_CHECKING:
    from ._identity import Identity

__all__ = [
    "CORRELATION_ID",
    "DEFAULT_MAX_FRAME_BYTES",
    "AgentStepObserver",
    "Deliver",
    "RoutingTable",
    "TableStatistics",
]

AgentStepObserver = Callable[[str, str, Mapping[str, Any]], None]
"""Told ``(request_id, kind, data)`` of what the router sees agents do for a turn:
``agent_invoked``, ``agent_answered``, ``agent_failed`` (``data``: ``agent_id``,
``agent_name``, and ``error`` for a failure)."""

DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
"""1 MiB: the library's own ``websockets`` client refuses larger frames (close 1009)."""

CORRELATION_ID = "correlation_id"
"""The key of a back-end's correlated invocation and of every frame that answers it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Deliver:
    """Send ``frame`` to the connection ``conn_id``.

    The frame stays an object until a socket needs its text: a connection in our own
    process (the router session's) takes it as it is, with no JSON encoded and parsed
    again. Frames delivered are read-only to their receiver (one may go to several).
    """

    conn_id: str
    frame: Frame | str

    @property
    def text(self) -> str:
        """The frame as the JSON text a socket sends."""
        frame = self.frame
        return frame if isinstance(frame, str) else dump_frame(frame)


@dataclasses.dataclass(frozen=True, slots=True)
class TableStatistics:
    """A snapshot of the routing table."""

    connections: int
    clients: int
    registered_agents: int
    pending_invocations: int
    refused_frames: int
    backend_backlog: int = 0
    """Frames for the back-end kept while it is not connected."""
    backlog_dropped: int = 0
    """Frames for the back-end dropped because the backlog was full."""
    logs_forwarded: int = 0
    """Agent logs forwarded to the back-end."""
    logs_unauthenticated: int = 0
    """Log frames dropped because their sender is not a (verified) agent."""
    logs_over_budget: int = 0
    """Log frames dropped because their agent spent its log budget."""
    refused_connections: int = 0
    """Connections refused by `RoutingTable.admit`."""
    refused_invocations: int = 0
    """Invocations of another user's agent, answered as if it were not active."""
    stray_replies: int = 0
    """Replies dropped because their sender owed the named connection none."""
    standby_backends: int = 0
    """Back-end connections waiting for the current one to close."""
    swept_connections: int = 0
    """Connections removed by a sweep because their close never reached the hub."""


@dataclasses.dataclass(slots=True)
class _Connection:
    conn_id: str
    identity: Identity
    # Callers (connection ids) waiting on this connection, with their number of calls.
    callers: Counter[str] = dataclasses.field(default_factory=Counter)
    # Connections this one has invoked and not yet heard back from.
    callees: Counter[str] = dataclasses.field(default_factory=Counter)
    registration: Frame | None = None
    # With an observer: the request ids of this connection's calls to each agent, in
    # the order made (an agent answers a connection's calls in order).
    turns: dict[str, collections.deque[str]] = dataclasses.field(default_factory=dict)
    # Correlated calls (their invoked_by) this connection must answer, and has made.
    owed: set[str] = dataclasses.field(default_factory=set)
    awaited: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True, slots=True)
class _Correlated:
    """One correlated call in flight: who made it, who owes the answer, and its ids."""

    caller_id: str
    callee_id: str
    correlation_id: str
    request_id: str | None
    """For the observer: the turn it belongs to (calls to agents only)."""


DEFAULT_BACKEND_BACKLOG = 64 * 1024 * 1024
"""Bytes of back-end frames a router keeps while no back-end is connected."""


class RoutingTable:
    """Client ids, connections and pending invocations of one router.

    Args:
        keys: The back-end and master-agent API keys.
        authenticate: Admit and route only authenticated clients (see the module
            docstring); agent identities must then carry their verified ``owner``.
        log_limits: Every verified agent's log budget (with ``authenticate``).
        clock: Monotonic seconds, for the log budgets.
        max_frame_bytes: Frames longer than this are refused with an error frame.
        replay_registrations: When the back-end (re)connects, forward to it the
            ``agent_register`` of every agent connected at that moment, so a back-end
            restart does not leave connected agents marked inactive.
        backend_backlog: The most bytes of frames for the back-end (logs,
            unregistrations) kept while it is not connected, and forwarded in order once
            it is: a back-end that restarts loses none of what agents sent meanwhile.
            Past it the oldest are dropped and counted.
    """

    def __init__(
        self,
        keys: ApiKeys | None = None,
        *,
        authenticate: bool = False,
        log_limits: LogLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        replay_registrations: bool = True,
        backend_backlog: int = DEFAULT_BACKEND_BACKLOG,
        observe: AgentStepObserver | None = None,
    ) -> None:
        self.keys = keys or ApiKeys()
        self.authenticate = authenticate
        self.log_limits = log_limits or LogLimits()
        self._clock = clock
        self._budgets: dict[str, LogBudget] = {}
        self._standby: collections.deque[str] = collections.deque()
        self._counts: Counter[str] = Counter()
        self.max_frame_bytes = max_frame_bytes
        self.replay_registrations = replay_registrations
        self._backlog: collections.deque[str] = collections.deque()
        self._backlog_bytes = 0
        self._backlog_limit = backend_backlog
        self._backlog_dropped = 0
        self._connections: dict[str, _Connection] = {}
        self._clients: dict[str, str] = {}
        self._correlated: dict[str, _Correlated] = {}
        self._ids = itertools.count(1)
        self._refused = 0
        self._observe = observe

    # -- queries -----------------------------------------------------------------

    def conn_id_of(self, client_id: str) -> str | None:
        """Return the current connection of ``client_id``, or ``None``."""
        return self._clients.get(client_id)

    def identity_of(self, conn_id: str) -> Identity | None:
        """Return the identity of connection ``conn_id``, or ``None`` if it is gone."""
        conn = self._connections.get(conn_id)
        return conn.identity if conn else None

    def statistics(self) -> TableStatistics:
        """Return a snapshot of the table's sizes and counters."""
        return TableStatistics(
            connections=len(self._connections),
            clients=len(self._clients),
            registered_agents=sum(
                1 for c in self._connections.values() if c.registration is not None
            ),
            pending_invocations=sum(c.callers.total() for c in self._connections.values())
            + len(self._correlated),
            refused_frames=self._refused,
            backend_backlog=len(self._backlog),
            backlog_dropped=self._backlog_dropped,
            logs_forwarded=self._counts["logs_forwarded"],
            logs_unauthenticated=self._counts["logs_unauthenticated"],
            logs_over_budget=self._counts["logs_over_budget"],
            refused_connections=self._counts["refused_connections"],
            refused_invocations=self._counts["refused_invocations"],
            stray_replies=self._counts["stray_replies"],
            standby_backends=len(self._standby),
        )

    # -- transitions -------------------------------------------------------------

    def admit(self, identity: Identity) -> Identity | None:
        """Decide whether a new connection may open, before :meth:`open`.

        A table that does not authenticate admits every identity as it is. One that
        does admits the masters, agents whose token was verified (they carry an
        ``owner``), and ``send()`` sockets whose caller is a master key or a
        connected verified agent; such a socket acts for its caller's owner.

        Returns:
            The identity to open (with the owner it acts for), or ``None`` to refuse.
        """
        if not self.authenticate or identity.holds_master_key(self.keys):
            return identity
        admitted: Identity | None = None
        if identity.kind is ClientKind.AGENT:
            admitted = identity if identity.owner is not None else None
        elif identity.kind is ClientKind.INVOKE:
            # The library's send() sends "<own agent id>:<target>" and no token: the
            # caller must be connected with a verified one.
            caller = self._clients.get(identity.client_id.partition(":")[0])
            conn = self._connections.get(caller) if caller is not None else None
            if conn is not None and conn.identity.kind is ClientKind.AGENT:
                admitted = dataclasses.replace(identity, owner=conn.identity.owner)
        if admitted is None or admitted.owner is None:
            self._counts["refused_connections"] += 1
            return None
        return admitted

    def open(self, identity: Identity) -> tuple[str, list[Deliver]]:
        """Add a connection; it becomes the current one of its client id.

        A back-end connection becomes current only if no other one is live: otherwise
        it waits as a standby, so that a second client with the back-end key cannot
        take the agents' events away from the first.

        Returns:
            The new connection id and the frames to deliver (the registrations replayed
            to a connecting back-end).
        """
        conn_id = f"{identity.client_id}#{next(self._ids)}"
        self._connections[conn_id] = _Connection(conn_id, identity)
        if identity.kind is ClientKind.BACKEND and MASTER_SERVER_BE in self._clients:
            self._standby.append(conn_id)
            return conn_id, []
        self._clients[identity.client_id] = conn_id
        if identity.kind is ClientKind.BACKEND:
            return conn_id, self._catch_up(conn_id)
        return conn_id, []

    def _catch_up(self, conn_id: str) -> list[Deliver]:
        # What happened while no back-end listened comes first, then the state now.
        out = [Deliver(conn_id, text) for text in self._backlog]
        self._backlog.clear()
        self._backlog_bytes = 0
        if self.replay_registrations:
            for conn in self._connections.values():
                if conn.registration is not None and self._is_current(conn):
                    out.append(Deliver(conn_id, conn.registration))
        return out

    def close(self, conn_id: str) -> list[Deliver]:
        """Remove a connection, and tell whoever waits on it that it is gone.

        The client id is unregistered (and ``agent_unregister`` forwarded to the
        back-end, for agents and the master agent) only if this connection is still its
        current one: the old socket of a reconnected agent leaves the new one alone.
        """
        conn = self._connections.pop(conn_id, None)
        if conn is None:
            return []
        out: list[Deliver] = []
        identity = conn.identity
        if identity.kind is ClientKind.BACKEND:
            if conn_id in self._standby:
                self._standby.remove(conn_id)
            elif self._clients.get(MASTER_SERVER_BE) == conn_id:
                del self._clients[MASTER_SERVER_BE]
                if self._standby:
                    successor = self._standby.popleft()
                    self._clients[MASTER_SERVER_BE] = successor
                    out += self._catch_up(successor)
        elif self._clients.get(identity.client_id) == conn_id:
            del self._clients[identity.client_id]
            self._budgets.pop(identity.client_id, None)
            if identity.kind in (ClientKind.AGENT, ClientKind.MASTER):
                out += self._to_backend(
                    {
                        "request_payload": {
                            "agent_uuid": identity.client_id,
                            "message_type": str(MessageType.AGENT_UNREGISTER),
                        }
                    }
                )
        gone = agent_error(AGENT_UNREGISTERED, agent_uuid=identity.client_id)
        for caller_id in conn.callers:
            caller = self._connections.get(caller_id)
            if caller is not None:
                del caller.callees[conn_id]
                out.append(Deliver(caller_id, gone))
                while self._observe is not None and caller.turns.get(conn_id):
                    self._observe_answer(caller, conn, None)
        for callee_id in conn.callees:
            callee = self._connections.get(callee_id)
            if callee is not None:
                del callee.callers[conn_id]
        for token in conn.owed:
            call = self._correlated.pop(token)
            caller = self._connections.get(call.caller_id)
            if caller is not None:
                caller.awaited.discard(token)
                out.append(Deliver(call.caller_id, {**gone, CORRELATION_ID: call.correlation_id}))
                if self._observe is not None and call.request_id is not None:
                    self._observe_outcome(call.request_id, conn, None)
        for token in conn.awaited:
            # A back-end that went away wants no answers: the callee's are strays now.
            made = self._correlated.pop(token, None)  # None: it called itself, done above
            callee = self._connections.get(made.callee_id) if made is not None else None
            if callee is not None:
                callee.owed.discard(token)
        return out

    def receive(self, conn_id: str, data: str | bytes | Frame) -> list[Deliver]:
        """Process one frame received on connection ``conn_id``.

        Args:
            conn_id: The sender.
            data: The frame as a socket received it, or, from a connection in our own
                process, the frame object itself (it then belongs to the table).

        Returns:
            The frames to deliver. Bad frames (not JSON, too large, unknown type) are
            answered with an error frame to the sender; they never raise.
        """
        sender = self._connections.get(conn_id)
        if sender is None:
            return []
        if isinstance(data, dict):
            return self._route(sender, data, data)
        try:
            frame = parse_frame(data, limit=self.max_frame_bytes)
        except FrameTooLargeError as exc:
            return self._refuse_oversize(sender, data, exc)
        except InvalidFrameError:
            return [
                self._reply(
                    conn_id,
                    router_error("Invalid JSON format", ErrorType.INVALID_JSON_REQUEST_FORMAT),
                )
            ]
        return self._route(sender, frame, data)

    def _route(self, sender: _Connection, frame: Frame, data: str | bytes | Frame) -> list[Deliver]:
        conn_id = sender.conn_id
        message_type = frame.pop("message_type", None)
        target = frame.pop("agent_uuid", None)
        match message_type:
            case MessageType.AGENT_REGISTER:
                return self._register(sender, frame)
            case MessageType.AGENT_INVOKE:
                return self._invoke(sender, target, frame)
            case MessageType.AGENT_RESPONSE | MessageType.AGENT_ERROR:
                return self._respond(sender, str(message_type), frame)
            case MessageType.AGENT_LOG:
                return self._log(sender, frame, _size(data))
            case _:
                if isinstance(data, dict):
                    raw = dump_frame({"message_type": message_type, **data})
                else:
                    raw = data.decode(errors="replace") if isinstance(data, bytes) else data
                return [
                    self._reply(
                        conn_id,
                        router_error(f"Unexpected exception: {raw}", ErrorType.AGENT_GENERAL_ERROR),
                    )
                ]

    # -- message handlers --------------------------------------------------------

    def _register(self, sender: _Connection, frame: Frame) -> list[Deliver]:
        identity = sender.identity
        if identity.kind in (ClientKind.BACKEND, ClientKind.MASTER) or (
            self.authenticate and identity.kind is not ClientKind.AGENT
        ):
            return []
        payload = frame.get("request_payload")
        forward = {
            "request_payload": {
                **(payload if isinstance(payload, dict) else {}),
                "agent_uuid": identity.client_id,
                "agent_jwt": identity.agent_jwt,
                "message_type": str(MessageType.AGENT_REGISTER),
            }
        }
        if identity.kind is ClientKind.AGENT:
            sender.registration = forward
        # A back-end that connects later is sent the registrations of that moment.
        return self._to_backend(forward, replayed=self.replay_registrations)

    def _invoke(self, sender: _Connection, target: Any, frame: Frame) -> list[Deliver]:
        correlation_id: str | None = None
        if sender.identity.kind is ClientKind.BACKEND and isinstance(
            frame.get(CORRELATION_ID), str
        ):
            correlation_id = frame.pop(CORRELATION_ID)
        payload = frame.get("request_payload")
        if payload is None and target is None:
            # Upstream sends both errors; the second ends a waiting send().
            return [
                _answer(
                    sender.conn_id,
                    router_error(
                        "Missing request payload or agent UUID", ErrorType.NO_REQUEST_PAYLOAD
                    ),
                    correlation_id,
                ),
                _answer(sender.conn_id, _not_active(), correlation_id),
            ]
        target_conn_id = self._clients.get(target) if isinstance(target, str) else None
        if target_conn_id is None or (
            target == MASTER_SERVER_ML and not sender.identity.may_invoke_master(self.keys)
        ):
            return [_answer(sender.conn_id, _not_active(), correlation_id)]
        callee = self._connections[target_conn_id]
        if not self._may_invoke(sender.identity, callee.identity):
            # As if it were not there: another user's agent ids are not to be probed.
            self._counts["refused_invocations"] += 1
            return [_answer(sender.conn_id, _not_active(), correlation_id)]
        if (
            isinstance(payload, dict)
            and "error_message" in payload
            and sender.identity.may_invoke_master(self.keys)
        ):
            # The back-end tells an agent to go away (a bad JWT at registration).
            error = {**payload, "message_type": str(MessageType.AGENT_ERROR)}
            return [Deliver(target_conn_id, {"error": error})]
        if correlation_id is not None:
            return self._invoke_correlated(sender, callee, frame, correlation_id)
        frame["invoked_by"] = sender.conn_id
        callee.callers[sender.conn_id] += 1
        sender.callees[target_conn_id] += 1
        if self._observe is not None and callee.identity.kind is ClientKind.AGENT:
            self._observe_invoke(sender, callee, frame)
        return [Deliver(target_conn_id, frame)]

    def _invoke_correlated(
        self, sender: _Connection, callee: _Connection, frame: Frame, correlation_id: str
    ) -> list[Deliver]:
        token = f"{sender.conn_id}~{correlation_id}"
        if token in self._correlated:
            # Its answer could not tell the two calls apart.
            error = agent_error(
                f"Correlation id already in use: {correlation_id}",
                error_type=str(ErrorType.AGENT_GENERAL_ERROR),
            )
            return [_answer(sender.conn_id, error, correlation_id)]
        request_id: str | None = None
        if self._observe is not None and callee.identity.kind is ClientKind.AGENT:
            request_id = _request_id(frame)
            if request_id is not None:
                self._observe(request_id, "agent_invoked", _agent_of(callee))
        self._correlated[token] = _Correlated(
            sender.conn_id, callee.conn_id, correlation_id, request_id
        )
        sender.awaited.add(token)
        callee.owed.add(token)
        frame["invoked_by"] = token
        return [Deliver(callee.conn_id, frame)]

    def _settle_correlated(self, token: Any, callee: _Connection) -> _Correlated | None:
        """Take the correlated call ``token`` as answered by ``callee``; ``None`` if
        ``token`` names none that ``callee`` owes."""
        call = self._correlated.get(token) if isinstance(token, str) else None
        if call is None or call.callee_id != callee.conn_id:
            return None
        del self._correlated[token]
        callee.owed.discard(token)
        self._connections[call.caller_id].awaited.discard(token)
        return call

    def _observe_invoke(self, sender: _Connection, callee: _Connection, frame: Frame) -> None:
        assert self._observe is not None
        request_id = _request_id(frame)
        if request_id is None:
            return
        sender.turns.setdefault(callee.conn_id, collections.deque()).append(request_id)
        self._observe(request_id, "agent_invoked", _agent_of(callee))

    def _observe_answer(
        self, caller: _Connection, callee: _Connection, frame: Frame | None
    ) -> None:
        """Report the answer (``frame``; None: the agent went away) to the oldest call."""
        assert self._observe is not None
        pending = caller.turns.get(callee.conn_id)
        if not pending:
            return
        request_id = pending.popleft()
        if not pending:
            del caller.turns[callee.conn_id]
        self._observe_outcome(request_id, callee, frame)

    def _observe_outcome(self, request_id: str, callee: _Connection, frame: Frame | None) -> None:
        """Report the answer (``frame``; None: the agent went away) to call ``request_id``."""
        assert self._observe is not None
        data = _agent_of(callee)
        if frame is not None and frame.get("message_type") == str(MessageType.AGENT_RESPONSE):
            self._observe(request_id, "agent_answered", data)
            return
        error = frame.get("error") if frame is not None else AGENT_UNREGISTERED
        if isinstance(error, dict):
            error = error.get("error_message", error)
        self._observe(request_id, "agent_failed", {**data, "error": str(error)})

    def _respond(self, sender: _Connection, message_type: str, frame: Frame) -> list[Deliver]:
        invoked_by = frame.pop("invoked_by", None)
        if sender.owed and (call := self._settle_correlated(invoked_by, sender)) is not None:
            frame["message_type"] = message_type
            frame[CORRELATION_ID] = call.correlation_id
            if self._observe is not None and call.request_id is not None:
                self._observe_outcome(call.request_id, sender, frame)
            return [Deliver(call.caller_id, frame)]
        caller_id = self._resolve(invoked_by)
        if caller_id is None or not self._settle(caller_id, sender):
            # Only a connection that invoked this one, and still waits, gets a reply:
            # any other would let a client push answers into someone else's call.
            self._counts["stray_replies"] += 1
            return []
        frame["message_type"] = message_type
        if self._observe is not None:
            self._observe_answer(self._connections[caller_id], sender, frame)
        return [Deliver(caller_id, frame)]

    def _log(self, sender: _Connection, frame: Frame, size: int) -> list[Deliver]:
        identity = sender.identity
        if identity.kind is not ClientKind.AGENT or (self.authenticate and identity.owner is None):
            self._counts["logs_unauthenticated"] += 1
            return []
        if self.authenticate:
            budget = self._budgets.get(identity.client_id)
            if budget is None:
                budget = self._budgets[identity.client_id] = LogBudget(self.log_limits, self._clock)
            if not budget.spend(size):
                self._counts["logs_over_budget"] += 1
                return []
        self._counts["logs_forwarded"] += 1
        return self._to_backend(
            {
                "request_payload": {
                    "message_type": str(MessageType.AGENT_LOG),
                    "agent_uuid": sender.identity.client_id,
                    **frame,
                }
            }
        )

    def _refuse_oversize(
        self, sender: _Connection, data: str | bytes, exc: FrameTooLargeError
    ) -> list[Deliver]:
        self._refused += 1
        out = [
            self._reply(
                sender.conn_id,
                agent_error(str(exc), error_type=str(ErrorType.INVALID_JSON_REQUEST_FORMAT)),
            )
        ]
        # An oversized reply would leave its caller waiting forever: fail the call.
        try:
            frame = parse_frame(data, limit=len(data) * 4)
        except InvalidFrameError:
            return out
        if frame.get("message_type") in (MessageType.AGENT_RESPONSE, MessageType.AGENT_ERROR):
            message = f"Response refused by the router: {exc}"
            error = agent_error(message, error_type=str(ErrorType.AGENT_GENERAL_ERROR))
            invoked_by = frame.get("invoked_by")
            if (call := self._settle_correlated(invoked_by, sender)) is not None:
                out.append(_answer(call.caller_id, error, call.correlation_id))
                return out
            caller_id = self._resolve(invoked_by)
            if caller_id is not None and self._settle(caller_id, sender):
                out.append(self._reply(caller_id, error))
        return out

    # -- helpers -----------------------------------------------------------------

    def _is_current(self, conn: _Connection) -> bool:
        return self._clients.get(conn.identity.client_id) == conn.conn_id

    def _resolve(self, invoked_by: Any) -> str | None:
        if not isinstance(invoked_by, str) or not invoked_by:
            return None
        if invoked_by in self._connections:
            return invoked_by
        # A client that addresses replies by client id, as upstream ids were.
        return self._clients.get(invoked_by)

    def _settle(self, caller_id: str, callee: _Connection) -> bool:
        """Count one call of ``caller_id`` to ``callee`` as answered; ``False`` if none
        was pending."""
        if callee.callers[caller_id] <= 0:
            return False
        callee.callers[caller_id] -= 1
        if not callee.callers[caller_id]:
            del callee.callers[caller_id]
        caller = self._connections[caller_id]
        caller.callees[callee.conn_id] -= 1
        if caller.callees[callee.conn_id] <= 0:
            del caller.callees[callee.conn_id]
        return True

    def _may_invoke(self, caller: Identity, callee: Identity) -> bool:
        if not self.authenticate or callee.kind is not ClientKind.AGENT:
            return True
        return caller.holds_master_key(self.keys) or (
            caller.owner is not None and caller.owner == callee.owner
        )

    def _to_backend(self, frame: Frame, *, replayed: bool = False) -> list[Deliver]:
        backend = self._clients.get(MASTER_SERVER_BE)
        if backend is not None:
            return [Deliver(backend, frame)]
        if not replayed:
            text = dump_frame(frame)
            self._backlog.append(text)
            self._backlog_bytes += len(text)
            while self._backlog_bytes > self._backlog_limit:
                self._backlog_bytes -= len(self._backlog.popleft())
                self._backlog_dropped += 1
        return []

    @staticmethod
    def _reply(conn_id: str, frame: Frame) -> Deliver:
        return Deliver(conn_id, frame)


def _answer(conn_id: str, frame: Frame, correlation_id: str | None) -> Deliver:
    """Send ``frame`` to ``conn_id``, as the answer to its correlated call if it is one."""
    if correlation_id is not None:
        frame[CORRELATION_ID] = correlation_id
    return Deliver(conn_id, frame)


def _request_id(frame: Frame) -> str | None:
    metadata = frame.get("request_metadata")
    request_id = metadata.get("request_id") if isinstance(metadata, dict) else None
    return request_id if isinstance(request_id, str) and request_id else None


def _size(data: str | bytes | Frame) -> int:
    # Frames from our own process are objects, and none of them is an agent's log.
    return len(data) if isinstance(data, (str, bytes)) else 0


def _agent_of(conn: _Connection) -> dict[str, Any]:
    registration = conn.registration or {}
    payload = registration.get("request_payload", registration)
    name = payload.get("agent_name") if isinstance(payload, dict) else None
    return {
        "agent_id": conn.identity.client_id,
        "agent_name": name if isinstance(name, str) else None,
    }


def _not_active() -> Frame:
    return agent_error(AGENT_NOT_ACTIVE, error_type=str(ErrorType.AGENT_NOT_ACTIVE))
