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
log's ids) and queues the rest for two worker tasks the actor owns, one per queue, so
that a registration never waits behind a big batch of logs: one applies the agent
events in the order they came, the other writes the logs in the order they came.
An outage of the database is not a crash: each worker keeps what was accepted, tries
again after a pause that doubles up to a cap, and carries on once the database answers,
spending no restart; meanwhile `RegistryStatistics.waiting_since` says since when it
waits. Only work the database itself refuses (a poison row) is dropped, and counted.
Both queues are bounded; what does not fit is counted as overflow.

Batches adapt to the load, with no timer: the log worker takes what is buffered once
the logs stop arriving (the mailbox has drained), and whatever piled up while a batch
was being written goes in the next one, up to ``batch_size``. Agent events are batched
the same way, up to ``event_batch_size``, each agent at most once per batch (see
`next_batch`): a few statements store a whole batch, where one transaction per agent
made 1,000 reconnecting agents wait seconds to be active. A batch the database refuses
(an alias taken, a row it cannot store) is applied again one event at a time.

At start every agent is marked inactive, as upstream does, but only by a process that
owns the router its session uses (``RegistryConfig.owns_router``: the embedded router,
which no agent can have reached before this process started it). It is the first
queued job, so a start needs no database. A back-end on another process's router (an
upstream ``ROUTER_WS_URL``, a standby) leaves the agents as they are: they are still
connected to that router, and whoever runs it resets them when it starts (the
standalone ``genai-backend router`` with a database, or the back-end embedding it).
Place it with `registry_spec`; it must start before the router session.
"""

from __future__ import annotations

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

from ._jobs import Accepted, AgentJob, Register, ResetAgents, Unregister, next_batch
from ._rules import decode_agent_jwt, is_agent_id, validate_log
from ._store import (
    Registration,
    activate_agent,
    activate_agents,
    deactivate_agent,
    deactivate_agents,
    is_outage,
    is_refusal,
    recheck_flows,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

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
        event_batch_size: The most agent events applied in one batch.
        event_limit: Agent registrations and disconnects kept while the database is
            unreachable; more are dropped and counted (``events_overflowed``). Room
            for a disconnect and a registration of 10,000 agents reconnecting at once.
        retry: Pause between attempts while the database is unreachable or refuses.
        owns_router: Whether this process owns the router its session uses (the
            embedded one): only then is every agent marked inactive at start. False
            for a back-end on another process's router, whose agents stay connected
            while this process starts and stops.
        process_id: This process's identity: when given, every committed batch of logs
            notifies ``genai_logs`` with its ids in the same transaction, so that the
            other processes push them to their own sockets (`actors.fanout.LogRelay`).
    """

    jwt_secret: str
    jwt_algorithm: str = "HS256"
    batch_size: int = 5000
    buffer_limit: int = 100_000
    event_batch_size: int = 1000
    event_limit: int = 20_000
    retry: Backoff = _RETRY
    owns_router: bool = True
    process_id: uuid.UUID | None = None


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
        self._events = _Lane("agent events")
        self._logs = _Lane("logs")
        # Ends the workers' retry pauses.
        self._stopping = anyio.Event()

    # -- lifecycle -----------------------------------------------------------------

    async def on_start(self) -> None:
        # Queued rather than done here, so that the registry starts (and the tree with
        # it) while the database is down; registrations queue behind it. Once per
        # process: after a restart the agents marked active are still connected. Only
        # the router's owner may: another process's router still holds its agents.
        if self.config.owns_router and not self._accepted.reset:
            self._accepted.reset = True
            self._jobs.appendleft(ResetAgents())
        for lane, pending, apply, drop in (
            (self._events, self._jobs.__len__, self._apply_events, self._drop_events),
            (self._logs, self._buffer.__len__, self._store, self._drop_logs),
        ):
            lane.done = anyio.Event()
            self.start_soon(self._work, lane, pending, apply, drop, name=f"{self.name} {lane}")

    async def on_stop(self) -> None:
        # The workers settle the work in flight (they stop retrying), then whatever is
        # queued gets one attempt, so a graceful stop loses nothing the database takes.
        self._stopping.set()
        for lane in (self._events, self._logs):
            lane.wake.set()
            if lane.done is not None:
                await lane.done.wait()
        await self._flush_once()

    def statistics(self) -> RegistryStatistics:
        """Return a snapshot of the counters (does not wait)."""
        lanes = (self._events, self._logs)
        waits = [lane.waiting_since for lane in lanes if lane.waiting_since is not None]
        return dataclasses.replace(
            self._stats,
            buffered=len(self._buffer),
            pending_events=len(self._jobs),
            waiting_since=min(waits) if waits else None,
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
                    self._queue_job(Unregister(_to_uuid(agent)))
            case GetStatistics():
                result = self.statistics()
        self._nudge()
        return result

    def _queue_log(self, log: NewLog | None) -> None:
        if log is None:
            self._count(dropped=1)
        elif len(self._buffer) >= self.config.buffer_limit:
            self._count(overflowed=1)
        else:
            self._buffer.append(log)

    def _queue_job(self, job: AgentJob) -> None:
        if len(self._jobs) >= self.config.event_limit:
            logger.error("agent event queue full; dropping %r", job)
            self._count(events_overflowed=1)
        else:
            self._jobs.append(job)

    def _nudge(self) -> None:
        # Agent events go at once: those that arrive while a batch is written go in
        # the next. Logs gather while the mailbox still holds messages (the actor
        # yields every few hundred of them, letting the workers run), so a burst goes
        # in one batch once the mailbox has drained or a batch is full.
        if self._events.idle and self._jobs:
            self._events.wake.set()
        if self._logs.idle and (
            len(self._buffer) >= self.config.batch_size
            or (self._buffer and self.ref.statistics().depth == 0)
        ):
            self._logs.wake.set()

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
            self._queue_job(Register(event, claims))

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

    # -- the workers (owned tasks) -------------------------------------------------

    async def _work(
        self,
        lane: _Lane,
        pending: Callable[[], int],
        apply: Callable[[], Awaitable[None]],
        drop: Callable[[Exception], None],
    ) -> None:
        """Apply the lane's queue until the actor stops, waiting out outages."""
        try:
            await self._work_until_stopped(lane, pending, apply, drop)
        finally:
            if lane.done is not None:
                lane.done.set()

    async def _work_until_stopped(
        self,
        lane: _Lane,
        pending: Callable[[], int],
        apply: Callable[[], Awaitable[None]],
        drop: Callable[[Exception], None],
    ) -> None:
        outages = refusals = 0
        while not self._stopping.is_set():
            if not pending():
                lane.wake = anyio.Event()
                lane.idle = True
                try:
                    await lane.wake.wait()
                finally:
                    lane.idle = False
                continue
            try:
                await apply()
            except Exception as exc:
                if is_outage(exc):
                    outages += 1
                    self._waiting(lane, exc)
                elif is_refusal(exc):
                    refusals += 1
                    if refusals >= _POISON_ATTEMPTS:
                        drop(exc)
                        refusals = 0
                        continue
                    logger.warning("the database refused a write (attempt %d): %r", refusals, exc)
                else:
                    # A bug of ours: the supervisor decides. The work it happened on is
                    # dropped (as a crashed actor's message is), the rest goes on after
                    # the restart.
                    drop(exc)
                    raise
                self._count(retries=1)
                self._stats = dataclasses.replace(self._stats, last_error=repr(exc)[:500])
                with anyio.move_on_after(self.config.retry.delay(outages + refusals - 1)):
                    await self._stopping.wait()
                continue
            outages = refusals = 0
            self._answering(lane)

    def _waiting(self, lane: _Lane, exc: Exception) -> None:
        if lane.waiting_since is None:
            lane.waiting_since = time.time()
            logger.warning(
                "database unreachable (%r): waiting for it with %d agent events and %d logs",
                exc,
                len(self._jobs),
                len(self._buffer),
            )
        else:
            logger.debug("database still unreachable: %r", exc)

    def _answering(self, lane: _Lane) -> None:
        since = lane.waiting_since
        if since is not None:
            lane.waiting_since = None
            logger.warning(
                "database answers again after %.1f s (%s); %d agent events and %d logs to go",
                time.time() - since,
                lane,
                len(self._jobs),
                len(self._buffer),
            )

    async def _apply_events(self) -> None:
        """Apply the next batch of agent events and dequeue it.

        A batch that the database refuses, or that fails on a bug, is not retried as
        a whole: its events go one at a time next (`Accepted.singly`; a registration
        by `activate_agent`, which also retries a taken alias), so that the usual
        rules drop only the one at fault.
        """
        accepted = self._accepted
        batch = next_batch(self._jobs, 1 if accepted.singly else self.config.event_batch_size)
        if accepted.singly or isinstance(batch[0], ResetAgents):
            await self._apply(batch[0])
            self._pop_jobs(1)
            return
        try:
            await self._apply_batch(batch)
        except Exception as exc:
            if is_outage(exc):
                raise
            logger.warning(
                "a batch of %d agent events failed; applying them one at a time",
                len(batch),
                exc_info=exc,
            )
            accepted.singly = len(batch)
            return
        self._pop_jobs(len(batch))

    def _pop_jobs(self, count: int) -> None:
        for _ in range(count):
            self._jobs.popleft()
        self._accepted.singly = max(0, self._accepted.singly - count)

    def _drop_events(self, exc: Exception) -> None:
        job = self._jobs[0]
        self._pop_jobs(1)
        logger.error("dropping %r the database keeps refusing: %r", job, exc)
        self._count(events_failed=1)

    def _drop_logs(self, exc: Exception) -> None:
        batch = self._accepted.batch
        count = len(batch[0]) if batch is not None else self._batch_size()
        logger.error("dropping a batch of %d logs the database keeps refusing: %r", count, exc)
        self._take(count)
        self._count(failed=count)

    async def _flush_once(self) -> None:
        # Kept, not cleared, when the database fails now: after a crash the restarted
        # registry goes on with it; at the end of the process it is reported lost.
        try:
            while self._jobs:
                await self._apply_events()
            while self._buffer:
                await self._store()
        except Exception as exc:
            logger.error(
                "stopping with %d agent events and %d logs not written: %r",
                len(self._jobs),
                len(self._buffer),
                exc,
            )

    async def _apply_batch(self, batch: Sequence[AgentJob]) -> None:
        """Apply registrations and disconnects of distinct agents in one transaction."""
        registers = [job for job in batch if isinstance(job, Register)]
        leaving = [job.agent_id for job in batch if isinstance(job, Unregister)]
        async with self.sessionmaker.begin() as db:
            # Disconnects first, so that the flows re-checked for the registrations see
            # the agents that left in the same batch as inactive.
            gone = await deactivate_agents(db, leaving)
            found = await activate_agents(
                db,
                [
                    Registration(
                        job.claims, job.event.name, job.event.description, job.event.input_schema
                    )
                    for job in registers
                ],
            )
        self._count(registered=len(found), unregistered=len(gone))
        for job in registers:
            if job.claims.agent_id not in found:  # no such row of that owner
                await self._reject(job.event.agent_uuid)

    async def _apply(self, job: AgentJob) -> None:
        match job:
            case ResetAgents():
                async with self.sessionmaker.begin() as db:
                    count = await AgentRepository(db).mark_all_inactive()
                logger.info("marked %d agents inactive at start", count)
            case Register(event, claims):
                async with self.sessionmaker.begin() as db:
                    agent = await activate_agent(
                        db,
                        claims,
                        name=event.name,
                        description=event.description,
                        input_schema=event.input_schema,
                    )
                    if agent is not None:
                        await recheck_flows(db, [agent.id])
                if agent is None:  # no such row of that owner
                    await self._reject(event.agent_uuid)
                else:
                    self._count(registered=1)
            case Unregister(agent_id):
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
            logs = LogRepository(db)
            entries = await logs.add_many(batch, ids=ids)
            if self.config.process_id is not None:
                # Sent with the commit, and only if it commits: the other processes
                # hear exactly the batches that are stored.
                await logs.notify_stored(self.config.process_id, [e.id for e in entries])
        self._take(len(batch))
        self._count(written=len(entries), batches=1)
        if self.sink is not None:
            try:
                await self.sink.logs_stored(entries)
            except Exception:
                logger.exception("the log sink failed; the logs are stored")


class _Lane:
    """One worker's side: it sleeps on ``wake`` while ``idle``; ``done`` tells `on_stop`
    that the work in flight is settled; ``waiting_since`` is when the database stopped
    answering it (None while it answers)."""

    __slots__ = ("done", "idle", "name", "waiting_since", "wake")

    def __init__(self, name: str) -> None:
        self.name = name
        self.wake = anyio.Event()
        self.idle = False
        self.done: anyio.Event | None = None
        self.waiting_since: float | None = None

    def __str__(self) -> str:
        return self.name


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
