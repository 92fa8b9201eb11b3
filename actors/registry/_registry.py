"""The registry actor: agent registrations and logs from the router, into PostgreSQL.

It handles the events the router session tells it (PROTOCOL.md §4, API.md §9.4 to 9.6 and
§13.8):

- ``agent_register``: check the agent JWT (a bad one gets the protocol's error frame
  through the session, which stops the agent), store name, alias, description and
  input schema, mark the agent active, re-check the flows that list it;
- ``agent_unregister``: mark the agent and its creator's flows inactive (temporary and
  master ids are ignored);
- ``agent_log``: validate and buffer; a writer task stores the buffer in batches
  (`LogRepository.add_many`, one statement each) and after each commit hands the
  stored entries to the `LogSink`. A database outage delays logs, it does not drop
  them while the bounded buffer holds; overflow is counted.

Batches adapt to the load, with no timer: the writer takes what is buffered once the
logs stop arriving (the mailbox has drained), and whatever piled up while a batch was
being written goes in the next one, up to ``batch_size``.

At start every agent is marked inactive, as upstream does. Place it with
`registry_spec`; it must start before the router session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.exc import DataError, IntegrityError

from actors.session import (
    AgentEvent,
    AgentLogged,
    AgentRegistered,
    AgentUnregistered,
    RouterSessionClient,
)
from persistence import AgentRepository, LogRepository
from runtime import Actor, ActorRef, Backoff, ChildSpec

from ._rules import decode_agent_jwt, is_agent_id, validate_log
from ._store import activate_agent, deactivate_agent, recheck_flows

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from persistence import LogEntry, NewLog

__all__ = [
    "NOT_REGISTERED",
    "GetStatistics",
    "LogSink",
    "RegistryActor",
    "RegistryClient",
    "RegistryConfig",
    "RegistryMessage",
    "RegistryStatistics",
    "registry_spec",
]

logger = logging.getLogger(__name__)

NOT_REGISTERED = "Agent ID was not registered before"
_RETRY = Backoff(initial=0.05, maximum=2.0, reset_after=0.0)
# A batch that fails this many times for a reason other than a lost database is dropped.
_POISON_ATTEMPTS = 3


class LogSink(Protocol):
    """Where stored logs go next (the live fan-out to the owners' sockets)."""

    async def logs_stored(self, logs: Sequence[LogEntry]) -> None:
        """Take the entries of one committed batch; ``creator_id`` is each log's owner."""


@dataclasses.dataclass(frozen=True, slots=True)
class RegistryConfig:
    """Settings of the registry.

    Attributes:
        jwt_secret: The key agent JWTs are signed with (``JWT_SECRET_KEY``).
        jwt_algorithm: Their algorithm (``HASH_ALGORITHM``, HS256).
        batch_size: The most logs written in one batch.
        buffer_limit: Logs kept while the database is unreachable; more are dropped
            and counted as overflow.
        retry: Delay between attempts to write a batch while writes fail.
    """

    jwt_secret: str
    jwt_algorithm: str = "HS256"
    batch_size: int = 5000
    buffer_limit: int = 100_000
    retry: Backoff = _RETRY


@dataclasses.dataclass(frozen=True, slots=True)
class RegistryStatistics:
    """A snapshot of the registry's counters.

    Attributes:
        buffered: Logs waiting to be written.
        written: Logs stored.
        batches: Batches committed.
        dropped: Logs refused as invalid (empty fields, ids that are not UUIDs).
        overflowed: Logs dropped because the buffer was full.
        failed: Logs dropped with a batch the database kept refusing (not an outage).
        retries: Failed batch writes that were retried.
        last_error: The last write error, if any.
        registered: Registrations accepted.
        rejected: Registrations refused (bad JWT or unknown agent).
        unregistered: Agents marked inactive on disconnect.
    """

    buffered: int = 0
    written: int = 0
    batches: int = 0
    dropped: int = 0
    overflowed: int = 0
    failed: int = 0
    retries: int = 0
    last_error: str | None = None
    registered: int = 0
    rejected: int = 0
    unregistered: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class GetStatistics:
    """Ask for a `RegistryStatistics` snapshot."""


RegistryMessage = AgentEvent | GetStatistics


class RegistryActor(Actor[RegistryMessage]):
    """Keep the agents table and the logs in step with the router's events.

    Args:
        config: JWT key and batching settings.
        sessionmaker: Opens one database session per unit of work.
        session: The router session's client (for error frames to agents), or its
            registry path, resolved when first needed. None: no error frames.
        sink: Receives the stored logs after each batch; None: no push.
    """

    def __init__(
        self,
        config: RegistryConfig,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        session: RouterSessionClient | str | None = "router.session",
        sink: LogSink | None = None,
    ) -> None:
        self.config = config
        self.sessionmaker = sessionmaker
        self._session_spec = session
        self._session: RouterSessionClient | None = (
            session if isinstance(session, RouterSessionClient) else None
        )
        self.sink = sink
        self._buffer: collections.deque[NewLog] = collections.deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._writer_done = asyncio.Event()
        self._stats = RegistryStatistics()

    # -- lifecycle -----------------------------------------------------------------

    async def on_start(self) -> None:
        async with self.sessionmaker.begin() as db:
            count = await AgentRepository(db).mark_all_inactive()
        logger.info("marked %d agents inactive at start", count)
        self.start_soon(self._write_forever, name=f"{self.name} log writer")

    async def on_stop(self) -> None:
        # The writer finishes the batch in flight (it stops retrying), then the rest
        # gets one attempt, so a graceful stop loses nothing the database takes.
        self._stopping.set()
        self._wake.set()
        await self._writer_done.wait()
        while self._buffer:
            batch = self._peek()
            try:
                await self._store(batch)
            except Exception as exc:
                logger.error("dropping %d logs at stop: %r", len(self._buffer), exc)
                self._count(failed=len(self._buffer))
                self._buffer.clear()

    def statistics(self) -> RegistryStatistics:
        """Return a snapshot of the counters (does not wait)."""
        return dataclasses.replace(self._stats, buffered=len(self._buffer))

    # -- messages ------------------------------------------------------------------

    async def handle(self, message: RegistryMessage) -> Any:
        match message:
            case AgentLogged(agent, session_id, request_id, level, text, _):
                self._queue(validate_log(agent, session_id, request_id, level, text))
            case AgentRegistered():
                await self._register(message)
            case AgentUnregistered(agent):
                await self._unregister(agent)
            case GetStatistics():
                return self.statistics()
        return None

    def _queue(self, log: NewLog | None) -> None:
        if log is None:
            self._count(dropped=1)
        elif len(self._buffer) >= self.config.buffer_limit:
            self._count(overflowed=1)
        else:
            self._buffer.append(log)
            self._wake.set()

    def _count(self, **increments: int) -> None:
        stats = self._stats
        self._stats = dataclasses.replace(
            stats, **{key: getattr(stats, key) + n for key, n in increments.items()}
        )

    async def _register(self, event: AgentRegistered) -> None:
        claims = decode_agent_jwt(
            event.agent_jwt, self.config.jwt_secret, self.config.jwt_algorithm
        )
        agent = None
        if claims is not None and str(claims.agent_id) == _canonical(event.agent_uuid):
            async with self.sessionmaker.begin() as db:
                agent = await activate_agent(
                    db,
                    claims,
                    name=event.name,
                    description=event.description,
                    input_schema=event.input_schema,
                )
                if agent is not None:
                    await recheck_flows(db, agent.id)
        if agent is None:
            self._count(rejected=1)
            logger.warning("agent %s sent an invalid JWT; stopping it", event.agent_uuid)
            await self._notify(event.agent_uuid)
            return
        self._count(registered=1)

    async def _unregister(self, agent_uuid: str) -> None:
        if not is_agent_id(agent_uuid):
            return  # temporary ("a:b") and master ids: nothing to do
        async with self.sessionmaker.begin() as db:
            known = await deactivate_agent(db, _to_uuid(agent_uuid))
        if known:
            self._count(unregistered=1)

    async def _notify(self, agent_uuid: str) -> None:
        if self._session is None and isinstance(self._session_spec, str):
            try:
                self._session = RouterSessionClient(self.system.ref_of(self._session_spec))
            except KeyError:
                logger.warning("no router session at %r", self._session_spec)
                return
        if self._session is not None:
            await self._session.notify_agent(agent_uuid, NOT_REGISTERED, "AgentGeneralError")

    # -- the log writer (an owned task) ----------------------------------------------

    async def _write_forever(self) -> None:
        try:
            await self._write_until_stopped()
        finally:
            self._writer_done.set()

    async def _write_until_stopped(self) -> None:
        attempt = poison = 0
        while not self._stopping.is_set():
            if not self._buffer:
                self._wake.clear()
                await self._wake.wait()
                await self._wait_drained()
                continue
            batch = self._peek()
            try:
                await self._store(batch)
            except Exception as exc:
                attempt, poison = attempt + 1, poison + (0 if _is_outage(exc) else 1)
                self._count(retries=1)
                self._stats = dataclasses.replace(self._stats, last_error=repr(exc)[:500])
                if poison >= _POISON_ATTEMPTS:
                    logger.error("dropping a batch of %d logs: %r", len(batch), exc)
                    self._take(len(batch))
                    self._count(failed=len(batch))
                    poison = 0
                    continue
                logger.warning("log batch write failed (attempt %d): %r", attempt, exc)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.retry.delay(attempt - 1)):
                        await self._stopping.wait()
                continue
            attempt = poison = 0

    async def _wait_drained(self) -> None:
        # Let the logs of a burst gather: yield while handling messages keeps adding
        # to the buffer (the actor yields at least every few hundred messages), so a
        # batch is written once the mailbox has drained or a batch is full.
        size = len(self._buffer)
        while size < self.config.batch_size and not self._stopping.is_set():
            await asyncio.sleep(0)
            if len(self._buffer) == size:
                return
            size = len(self._buffer)

    def _peek(self) -> list[NewLog]:
        return list(itertools.islice(self._buffer, self.config.batch_size))

    def _take(self, count: int) -> None:
        popleft = self._buffer.popleft
        for _ in range(count):
            popleft()

    async def _store(self, batch: list[NewLog]) -> None:
        """Write one batch, drop it from the buffer and hand it to the sink."""
        async with self.sessionmaker.begin() as db:
            entries = await LogRepository(db).add_many(batch)
        self._take(len(batch))
        self._count(written=len(entries), batches=1)
        if self.sink is not None:
            try:
                await self.sink.logs_stored(entries)
            except Exception:
                logger.exception("the log sink failed; the logs are stored")


def _is_outage(exc: BaseException) -> bool:
    # Only errors caused by the rows themselves make a batch poison; anything else
    # (refused or lost connections, a database that is down or renamed) is waited out.
    return not isinstance(exc, IntegrityError | DataError)


def _canonical(value: str) -> str:
    return str(_to_uuid(value)) if is_agent_id(value) else value


def _to_uuid(value: str) -> uuid.UUID:
    return uuid.UUID(value)


class RegistryClient:
    """The typed client of `RegistryActor`.

    Args:
        ref: The registry's ref.
    """

    def __init__(self, ref: ActorRef[RegistryMessage]) -> None:
        self.ref = ref

    async def statistics(self, *, timeout: float = 5.0) -> RegistryStatistics:  # noqa: ASYNC109
        """Ask the registry for its counters.

        Raises:
            TimeoutError: No answer within ``timeout``.
            ActorDeadError: The registry is stopped.
        """
        stats: RegistryStatistics = await self.ref.ask(GetStatistics(), timeout=timeout)
        return stats


def registry_spec(
    config: RegistryConfig,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    session: RouterSessionClient | str | None = "router.session",
    sink: LogSink | None = None,
    name: str = "registry",
    capacity: int = 50_000,
) -> ChildSpec:
    """Return the child spec of a permanent `RegistryActor`.

    Args:
        config: JWT key and batching settings.
        sessionmaker: The database session factory.
        session: The router session's client or path (default ``"router.session"``).
        sink: Receives stored logs after each batch.
        name: The child's name.
        capacity: Mailbox bound; a full mailbox makes the router session wait.
    """

    def factory() -> RegistryActor:
        return RegistryActor(config, sessionmaker, session=session, sink=sink)

    return ChildSpec(name, factory, capacity=capacity, shutdown=10.0)
