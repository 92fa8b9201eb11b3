"""The built-in master agent: a client of the router as ``master_server_ml``.

It speaks the upstream master's contract exactly (PROTOCOL.md §3): the router delivers
it the back-end's ``agent_invoke`` (``{session_id, user_id, configs, files, timestamp}``
with the turn's ``request_metadata``), and it answers ``{agents_trace, response,
is_success}`` as an ``agent_response`` on its connection, to the caller the router
named in ``invoked_by``. So the chat path is the same whether this master or the
original one answers.

Each invocation is a turn running in a task of its own: many turns run at once, and one
slow provider never holds up another user's turn. A turn no caller waits for any more
(past ``turn_timeout``, the back-end's own deadline) is stopped.

The first connect is part of the actor's start: with the embedded router (in-process,
like the router session) it cannot fail, so the master is there before the server is
ready. The router routes ``master_server_ml`` to its most recent connection, so an
external master that connects later takes the turns over. A router that is down is
waited for with a doubling pause, spending no restarts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from runtime import Actor, Backoff, ChildSpec

from ..chat import current_request_id, current_session_id
from ..session import DEFAULT_RECONNECT, RouterConnectionError
from ._loop import LoopSettings, TurnRequest, TurnRunner
from ._providers import ProviderPool
from ._tools import ToolCatalogue

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from persistence import CatalogueVersions

    from ..session import Connector, RouterConnection
    from ..tools import OutboundPolicy

__all__ = [
    "CancelMasterTurn",
    "GetMasterStatus",
    "MasterAgent",
    "MasterConfig",
    "MasterMessage",
    "MasterStatus",
    "master_agent_spec",
]

logger = logging.getLogger(__name__)

_CLOSE_GRACE = 1.0
UNEXPECTED = "Unexpected error occured. Try again later"


@dataclasses.dataclass(frozen=True, slots=True)
class MasterConfig:
    """How the built-in master connects and runs its turns.

    Attributes:
        api_key: ``MASTER_AGENT_API_KEY``: it makes us ``master_server_ml``.
        loop: The tool-calling loop's limits and default system prompt.
        turn_timeout: Seconds after which a turn is stopped (``MASTER_AGENT_TIMEOUT``,
            past which its caller no longer waits).
        reconnect: The pause between attempts while the router is down.
    """

    api_key: str
    loop: LoopSettings
    turn_timeout: float = 300.0
    reconnect: Backoff = DEFAULT_RECONNECT


@dataclasses.dataclass(frozen=True, slots=True)
class MasterStatus:
    """A snapshot of the master: connected, turns running, turns answered, and failed."""

    connected: bool
    running: int
    answered: int
    failed: int


@dataclasses.dataclass(frozen=True, slots=True)
class GetMasterStatus:
    """Ask for a `MasterStatus`."""


@dataclasses.dataclass(frozen=True, slots=True)
class CancelMasterTurn:
    """Stop the turn of ``request_id`` (its model call, its agent calls); no answer is
    sent for it: its caller has stopped waiting."""

    request_id: str


MasterMessage = GetMasterStatus | CancelMasterTurn


@dataclasses.dataclass(frozen=True, slots=True)
class _Invocation:
    """One ``agent_invoke`` the router delivered."""

    request: TurnRequest
    invoked_by: str


class MasterAgent(Actor[MasterMessage]):
    """Answer the back-end's master invocations with the user's model and agents.

    Args:
        config: Key, limits and timeouts.
        sessionmaker: Reads history and tools.
        connector: Opens router connections (in-process on the embedded router).
        catalogue: Users' catalogue versions, which keep their tool lists current.
        outbound: The policy of requests to users' MCP servers.
    """

    def __init__(
        self,
        config: MasterConfig,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        connector: Connector,
        catalogue: CatalogueVersions | None = None,
        outbound: OutboundPolicy | None = None,
    ) -> None:
        self.config = config
        self.connector = connector
        self._providers = ProviderPool()
        self._runner = TurnRunner(
            sessionmaker=sessionmaker,
            tools=ToolCatalogue(sessionmaker, catalogue),
            providers=self._providers,
            connector=connector,
            master_key=config.api_key,
            settings=config.loop,
            outbound=outbound,
        )
        self._main: RouterConnection | None = None
        self._closing = False
        self._running = 0
        self._answered = 0
        self._failed = 0
        # The cancel scope of each running turn, by request id.
        self._turns: dict[str, anyio.CancelScope] = {}

    async def on_start(self) -> None:
        try:
            first: RouterConnection | None = await self._connect()
        except RouterConnectionError as exc:
            logger.warning("master agent: router unreachable at %s: %s", self.connector.url, exc)
            first = None
        self.start_soon(self._keep_connected, first, name=f"{self.name} connection")

    async def on_stop(self) -> None:
        self._closing = True
        main, self._main = self._main, None
        with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
            if main is not None:
                await main.aclose()
        await self._providers.aclose()

    async def handle(self, message: MasterMessage) -> Any:
        match message:
            case GetMasterStatus():
                return MasterStatus(
                    self._main is not None, self._running, self._answered, self._failed
                )
            case CancelMasterTurn(request_id):
                scope = self._turns.get(request_id)
                if scope is not None:
                    logger.info("master turn %s cancelled by its caller", request_id)
                    scope.cancel()
        return None

    # -- the connection ------------------------------------------------------------------

    async def _connect(self) -> RouterConnection:
        conn = await self.connector.connect({"API-KEY": self.config.api_key})
        self._main = conn
        logger.info("master agent connected to the router at %s", self.connector.url)
        return conn

    async def _keep_connected(self, conn: RouterConnection | None) -> None:
        attempt = 0
        while True:
            if conn is None:
                await anyio.sleep(self.config.reconnect.delay(attempt))
                attempt += 1
                try:
                    conn = await self._connect()
                except RouterConnectionError as exc:
                    if attempt == 1:
                        logger.warning("master agent: router unreachable: %s; retrying", exc)
                    continue
            attempt = 0
            try:
                await self._read(conn)
            except RouterConnectionError as exc:
                if self._closing:
                    return
                logger.warning("master agent: router connection lost: %s", exc)
            self._main = None
            with anyio.CancelScope(shield=True), anyio.move_on_after(_CLOSE_GRACE):
                await conn.aclose()
            conn = None

    async def _read(self, conn: RouterConnection) -> None:
        while True:
            data = await conn.recv()
            invocation = _invocation(data)
            if isinstance(invocation, tuple):
                invoked_by, text = invocation
                logger.warning("master agent: refused an invocation: %s", text)
                result = {"agents_trace": [], "response": text, "is_success": False}
                await _send(conn, _response(result, 0.0, invoked_by))
                continue
            if invocation is None:
                logger.debug("master agent ignored a frame: %.200r", data)
                continue
            self.start_soon(self._turn, conn, invocation, name=f"{self.name} turn")

    # -- turns -------------------------------------------------------------------------

    async def _turn(self, conn: RouterConnection, invocation: _Invocation) -> None:
        request = invocation.request
        started = time.perf_counter()
        self._running += 1
        scope = anyio.CancelScope()
        if request.request_id:
            self._turns[request.request_id] = scope
        try:
            with scope, _turn_ids(request):
                with anyio.move_on_after(self.config.turn_timeout):
                    result = await self._runner.run(request)
                    await self._answer(conn, invocation, result, started)
                    return
                logger.warning("master turn stopped after %g s", self.config.turn_timeout)
                text = (
                    f"The master agent did not finish within {self.config.turn_timeout:g} s: "
                    "ask again with a narrower request."
                )
                result = {"agents_trace": [], "response": text, "is_success": False}
                await self._answer(conn, invocation, result, started)
        except Exception:
            # A bug: the caller still gets an answer, then the actor crashes with it.
            self._failed += 1
            frame = {
                "message_type": "agent_error",
                "error": {"error_message": UNEXPECTED},
                "execution_time": 0,
                "invoked_by": invocation.invoked_by,
            }
            with anyio.move_on_after(_CLOSE_GRACE), anyio.CancelScope(shield=True):
                await _send(conn, frame)
            raise
        finally:
            self._running -= 1
            if self._turns.get(request.request_id) is scope:
                del self._turns[request.request_id]

    async def _answer(
        self,
        conn: RouterConnection,
        invocation: _Invocation,
        result: dict[str, Any],
        started: float,
    ) -> None:
        if result.get("is_success"):
            self._answered += 1
        else:
            self._failed += 1
        elapsed = time.perf_counter() - started
        await _send(conn, _response(result, elapsed, invocation.invoked_by))


def _response(result: dict[str, Any], elapsed: float, invoked_by: str) -> dict[str, Any]:
    return {
        "message_type": "agent_response",
        "response": result,
        "execution_time": elapsed,
        "invoked_by": invoked_by,
    }


async def _send(conn: RouterConnection, frame: dict[str, Any]) -> None:
    try:
        await conn.send(frame)
    except RouterConnectionError as exc:
        # The caller learns it from the router: its call is failed when we go.
        logger.warning("master agent: the answer could not be sent: %s", exc)


@contextlib.contextmanager
def _turn_ids(request: TurnRequest) -> Iterator[None]:
    """Name the turn's ids on every log line of the task, as the chat actor does."""
    session_token = current_session_id.set(str(request.session_id))
    request_token = current_request_id.set(request.request_id)
    try:
        yield
    finally:
        current_request_id.reset(request_token)
        current_session_id.reset(session_token)


def _invocation(frame: dict[str, Any]) -> _Invocation | tuple[str, str] | None:
    """Read one frame: an invocation; its caller and why it is unusable; or None (skip)."""
    if "error" in frame:
        return None
    payload = frame.get("request_payload")
    metadata = frame.get("request_metadata")
    invoked_by = frame.get("invoked_by")
    if not isinstance(payload, Mapping) or not isinstance(invoked_by, str):
        return None
    metadata = metadata if isinstance(metadata, Mapping) else {}
    try:
        session_id = uuid.UUID(str(payload.get("session_id") or metadata.get("session_id")))
        user_id = uuid.UUID(str(payload.get("user_id")))
    except ValueError:
        return invoked_by, "Invalid master request: it needs a session_id and a user_id"
    configs = payload.get("configs")
    files = payload.get("files")
    request = TurnRequest(
        session_id=session_id,
        user_id=user_id,
        request_id=str(metadata.get("request_id") or ""),
        configs=configs if isinstance(configs, Mapping) else {},
        files=list(files) if isinstance(files, list) else [],
    )
    return _Invocation(request, invoked_by)


def master_agent_spec(
    config: MasterConfig,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    connector: Connector,
    catalogue: CatalogueVersions | None = None,
    outbound: OutboundPolicy | None = None,
    name: str = "master",
) -> ChildSpec:
    """Return the child spec of a `MasterAgent`: permanent, restarted with backoff.

    Place it after the router (and its session) it connects to.
    """

    def factory() -> MasterAgent:
        return MasterAgent(
            config,
            sessionmaker=sessionmaker,
            connector=connector,
            catalogue=catalogue,
            outbound=outbound,
        )

    return ChildSpec(
        name, factory, backoff=Backoff(initial=0.2, maximum=30.0), capacity=1000, shutdown=3.0
    )
