"""The registry actor: agent registrations and logs from the router, into PostgreSQL.

It handles the events the router session tells it (PROTOCOL.md §4, API.md §9.4 to 9.6 and
§13.8):

- ``agent_register``: check the agent JWT (a bad one gets the protocol's error frame
  through the session, which stops the agent), store name, alias, description and
  input schema, mark the agent active, re-check the flows that list it;
- ``agent_unregister``: mark the agent and its creator's flows inactive (temporary and
  master ids are ignored);
- ``agent_log``: validate and buffer; the logs are stored in batches
  (`LogRepository.add_many`, one statement each) and after each commit the stored
  entries go to the `LogSink`.

``handle`` never touches the database: it checks what it can (the JWT's signature, a
log's ids) and queues the rest for one worker task the actor owns, which applies the
queued agent events in the order they came, then the logs in the order they came.
An outage of the database is not a crash: the worker keeps what was accepted, tries
again after a pause that doubles up to a cap, and carries on once the database answers,
spending no restart; meanwhile `RegistryStatistics.waiting_since` says since when it
waits. Only work the database itself refuses (a poison row) is dropped, and counted.
Both queues are bounded; what does not fit is counted as overflow.

Batches adapt to the load, with no timer: the worker takes what is buffered once the
logs stop arriving (the mailbox has drained), and whatever piled up while a batch was
being written goes in the next one, up to ``batch_size``.

At start every agent is marked inactive, as upstream does: the first queued job, so a
start needs no database. Place it with `registry_spec`; it must start before the router
session.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from actors.session import (
    AgentEvent,
    AgentLogged,
    AgentRegistered,
    AgentUnregistered,
    RouterSessionClient,
)
from persistence import AgentRepository, LogRepository
from runtime import Actor, ActorDeadError, ActorRef, Backoff, ChildSpec, MailboxFullError

from ._rules import AgentClaims, decode_agent_jwt, is_agent_id, validate_log
from ._store import activate_agent, deactivate_agent, is_outage, is_refusal, recheck_flows

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
# Work the database refuses this many times in a row (not an outage) is dropped.
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
        event_limit: Agent registrations and disconnects kept while the database is
            unreachable; more are dropped and counted (``events_overflowed``).
        retry: Pause between attempts while the database is unreachable or refuses.
    """

    jwt_secret: str
    jwt_algorithm: str = "HS256"
    batch_size: int = 5000
    buffer_limit: int = 100_000
    event_limit: int = 10_000
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
        retries: Failed attempts (of a batch or an agent event) that were retried.
        last_error: The last database error, if any.
        registered: Registrations accepted.
        rejected: Registrations refused (bad JWT or unknown agent).
        unregistered: Agents marked inactive on disconnect.
        pending_events: Agent events (and the start-up reset) waiting for the database.
        events_overflowed: Agent events dropped because their queue was full.
        events_failed: Agent events dropped because the database kept refusing them.
        waiting_since: Wall-clock time (seconds since the epoch) since which the
            database cannot be reached; None while it answers.
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
    pending_events: int = 0
    events_overflowed: int = 0
    events_failed: int = 0
    waiting_since: float | None = None

    @property
    def waiting(self) -> bool:
        """Whether the registry is waiting for the database."""
        return self.waiting_since is not None


@dataclasses.dataclass(frozen=True, slots=True)
class GetStatistics:
    """Ask for a `RegistryStatistics` snapshot."""


RegistryMessage = AgentEvent | GetStatistics


# -- the worker's jobs -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _ResetAgents:
    """Mark every agent inactive (at start: no agent is connected yet)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Register:
    """Store a registration whose JWT signature is valid (the row is checked then)."""

    event: AgentRegistered
    claims: AgentClaims


@dataclasses.dataclass(frozen=True, slots=True)
class _Unregister:
    """Mark a disconnected agent and its flows inactive."""

    agent_id: uuid.UUID


_AgentJob = _ResetAgents | _Register | _Unregister


class Accepted:
    """What the registry has accepted and not yet written, in order.

    It belongs to the spec, not to one instance, as a chat actor's `Room` does: a
    registry restarted after a crash goes on with the same agent events and logs
    (only the one the crash happened on is dropped), and the start-up reset of every
    agent runs once per process, not again over agents that are still connected.
    """

    __slots__ = ("batch", "buffer", "jobs", "reset")

    def __init__(self) -> None:
        self.jobs: collections.deque[_AgentJob] = collections.deque()
        self.buffer: collections.deque[NewLog] = collections.deque()
        # The first logs of the buffer with their ids, fixed at the first attempt.
        self.batch: tuple[list[NewLog], list[int]] | None = None
        self.reset = False


class RegistryActor(Actor[RegistryMessage]):
    """Keep the agents table and the logs in step with the router's events.

    Args:
        config: JWT key and batching settings.
        sessionmaker: Opens one database session per unit of work.
        session: The router session's client (for error frames to agents), or its
            registry path, resolved when first needed. None: no error frames.
        sink: Receives the stored logs after each batch; None: no push.
        accepted: The work accepted and not yet written, shared with the instances
            restarted after a crash (`registry_spec` shares one); a new one if None.
    """

    def __init__(
        self,
        config: RegistryConfig,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        session: RouterSessionClient | str | None = "router.session",
        sink: LogSink | None = None,
        accepted: Accepted | None = None,
    ) -> None:
        self.config = config
        self.sessionmaker = sessionmaker
        self._session_spec = session
        self._session: RouterSessionClient | None = (
            session if isinstance(session, RouterSessionClient) else None
        )
        self.sink = sink
        self._accepted = accepted if accepted is not None else Accepted()
        self._jobs = self._accepted.jobs
        self._buffer = self._accepted.buffer
        self._stats = RegistryStatistics()
        # The worker's side: it sleeps on `_wake` while `_idle`; `_stopping` ends its
        # retry pauses; `_worker_done` tells `on_stop` the batch in flight is settled.
        self._wake = anyio.Event()
        self._idle = False
        self._stopping = anyio.Event()
        self._worker_done: anyio.Event | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def on_start(self) -> None:
        # Queued rather than done here, so that the registry starts (and the tree with
        # it) while the database is down; registrations queue behind it. Once per
        # process: after a restart the agents marked active are still connected.
        if not self._accepted.reset:
            self._accepted.reset = True
            self._jobs.appendleft(_ResetAgents())
        self._worker_done = anyio.Event()
        self.start_soon(self._work, name=f"{self.name} writer")

    async def on_stop(self) -> None:
        # The worker settles the work in flight (it stops retrying), then whatever is
        # queued gets one attempt, so a graceful stop loses nothing the database takes.
        self._stopping.set()
        self._wake.set()
        if self._worker_done is not None:
            await self._worker_done.wait()
        await self._flush_once()

    def statistics(self) -> RegistryStatistics:
        """Return a snapshot of the counters (does not wait)."""
        return dataclasses.replace(
            self._stats, buffered=len(self._buffer), pending_events=len(self._jobs)
        )

    # -- messages ------------------------------------------------------------------

    async def handle(self, message: RegistryMessage) -> Any:
        result = None
        match message:
            case AgentLogged(agent, session_id, request_id, level, text, _):
                self._queue_log(validate_log(agent, session_id, request_id, level, text))
            case AgentRegistered():
                await self._register(message)
            case AgentUnregistered(agent):
                if is_agent_id(agent):  # temporary ("a:b") and master ids: nothing to do
                    self._queue_job(_Unregister(_to_uuid(agent)))
            case GetStatistics():
                result = self.statistics()
        if self._idle:
            self._nudge()
        return result

    def _queue_log(self, log: NewLog | None) -> None:
        if log is None:
            self._count(dropped=1)
        elif len(self._buffer) >= self.config.buffer_limit:
            self._count(overflowed=1)
        else:
            self._buffer.append(log)

    def _queue_job(self, job: _AgentJob) -> None:
        if len(self._jobs) >= self.config.event_limit:
            logger.error("agent event queue full; dropping %r", job)
            self._count(events_overflowed=1)
        else:
            self._jobs.append(job)

    def _nudge(self) -> None:
        # Agent events go at once. Logs gather while the mailbox still holds messages
        # (the actor yields every few hundred of them, letting the worker run), so a
        # burst goes in one batch once the mailbox has drained or a batch is full.
        if (
            self._jobs
            or len(self._buffer) >= self.config.batch_size
            or (self._buffer and self.ref.statistics().depth == 0)
        ):
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
        if claims is None or str(claims.agent_id) != _canonical(event.agent_uuid):
            await self._reject(event.agent_uuid)  # known at once: no database needed
        else:
            self._queue_job(_Register(event, claims))

    async def _reject(self, agent_uuid: str) -> None:
        self._count(rejected=1)
        logger.warning("agent %s sent an invalid JWT; stopping it", agent_uuid)
        if self._session is None and isinstance(self._session_spec, str):
            try:
                self._session = RouterSessionClient(self.system.ref_of(self._session_spec))
            except KeyError:
                logger.warning("no router session at %r", self._session_spec)
                return
        if self._session is None:
            return
        try:
            await self._session.notify_agent(agent_uuid, NOT_REGISTERED, "AgentGeneralError")
        except (ActorDeadError, MailboxFullError) as exc:
            # The session is gone or restarting: the agent's socket went with it.
            logger.warning("could not stop agent %s: %r", agent_uuid, exc)

    # -- the worker (an owned task) ------------------------------------------------

    async def _work(self) -> None:
        try:
            await self._work_until_stopped()
        finally:
            if self._worker_done is not None:
                self._worker_done.set()

    async def _work_until_stopped(self) -> None:
        outages = refusals = 0
        while not self._stopping.is_set():
            if not self._jobs and not self._buffer:
                self._wake = anyio.Event()
                self._idle = True
                try:
                    await self._wake.wait()
                finally:
                    self._idle = False
                continue
            try:
                await self._apply_next()
            except Exception as exc:
                if is_outage(exc):
                    outages += 1
                    self._waiting(exc)
                elif is_refusal(exc):
                    refusals += 1
                    if refusals >= _POISON_ATTEMPTS:
                        self._drop_next(exc)
                        refusals = 0
                        continue
                    logger.warning("the database refused a write (attempt %d): %r", refusals, exc)
                else:
                    # A bug of ours: the supervisor decides. The work it happened on is
                    # dropped (as a crashed actor's message is), the rest goes on after
                    # the restart.
                    self._drop_next(exc)
                    raise
                self._count(retries=1)
                self._stats = dataclasses.replace(self._stats, last_error=repr(exc)[:500])
                with anyio.move_on_after(self.config.retry.delay(outages + refusals - 1)):
                    await self._stopping.wait()
                continue
            outages = refusals = 0
            self._answering()

    def _waiting(self, exc: Exception) -> None:
        if self._stats.waiting_since is None:
            self._stats = dataclasses.replace(self._stats, waiting_since=time.time())
            logger.warning(
                "database unreachable (%r): waiting for it with %d agent events and %d logs",
                exc,
                len(self._jobs),
                len(self._buffer),
            )
        else:
            logger.debug("database still unreachable: %r", exc)

    def _answering(self) -> None:
        since = self._stats.waiting_since
        if since is not None:
            self._stats = dataclasses.replace(self._stats, waiting_since=None)
            logger.warning(
                "database answers again after %.1f s; %d agent events and %d logs to go",
                time.time() - since,
                len(self._jobs),
                len(self._buffer),
            )

    async def _apply_next(self) -> None:
        """Apply the first agent event, else the first batch of logs, and dequeue it."""
        if self._jobs:
            await self._apply(self._jobs[0])
            self._jobs.popleft()
        else:
            await self._store()

    def _drop_next(self, exc: Exception) -> None:
        if self._jobs:
            job = self._jobs.popleft()
            logger.error("dropping %r the database keeps refusing: %r", job, exc)
            self._count(events_failed=1)
        else:
            batch = self._accepted.batch
            count = len(batch[0]) if batch is not None else self._batch_size()
            logger.error("dropping a batch of %d logs the database keeps refusing: %r", count, exc)
            self._take(count)
            self._count(failed=count)

    async def _flush_once(self) -> None:
        # Kept, not cleared, when the database fails now: after a crash the restarted
        # registry goes on with it; at the end of the process it is reported lost.
        while self._jobs or self._buffer:
            try:
                await self._apply_next()
            except Exception as exc:
                logger.error(
                    "stopping with %d agent events and %d logs not written: %r",
                    len(self._jobs),
                    len(self._buffer),
                    exc,
                )
                return

    async def _apply(self, job: _AgentJob) -> None:
        match job:
            case _ResetAgents():
                async with self.sessionmaker.begin() as db:
                    count = await AgentRepository(db).mark_all_inactive()
                logger.info("marked %d agents inactive at start", count)
            case _Register(event, claims):
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
                if agent is None:  # no such row of that owner
                    await self._reject(event.agent_uuid)
                else:
                    self._count(registered=1)
            case _Unregister(agent_id):
                async with self.sessionmaker.begin() as db:
                    known = await deactivate_agent(db, agent_id)
                if known:
                    self._count(unregistered=1)

    def _batch_size(self) -> int:
        return min(len(self._buffer), self.config.batch_size)

    def _take(self, count: int) -> None:
        popleft = self._buffer.popleft
        for _ in range(count):
            popleft()
        self._accepted.batch = None

    async def _store(self) -> None:
        """Write the first batch, drop it from the buffer and hand it to the sink.

        The batch and its ids are fixed before the first attempt and kept until it is
        stored: an attempt that fails around its commit (the connection lost before the
        answer) may have stored it, and the repeat then stores nothing twice.
        """
        if self._accepted.batch is None:
            batch = list(itertools.islice(self._buffer, self.config.batch_size))
            async with self.sessionmaker.begin() as db:
                ids = await LogRepository(db).allocate_ids(len(batch))
            self._accepted.batch = (batch, ids)
        batch, ids = self._accepted.batch
        async with self.sessionmaker.begin() as db:
            entries = await LogRepository(db).add_many(batch, ids=ids)
        self._take(len(batch))
        self._count(written=len(entries), batches=1)
        if self.sink is not None:
            try:
                await self.sink.logs_stored(entries)
            except Exception:
                logger.exception("the log sink failed; the logs are stored")


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

    accepted = Accepted()

    def factory() -> RegistryActor:
        return RegistryActor(config, sessionmaker, session=session, sink=sink, accepted=accepted)

    return ChildSpec(name, factory, capacity=capacity, shutdown=10.0)
