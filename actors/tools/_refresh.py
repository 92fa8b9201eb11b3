"""ToolRefresher: probes every MCP server and A2A agent again, periodically.

One round every ``interval`` seconds (or at once when asked): each distinct URL is
probed once, whoever added it and however many users did, concurrently up to a bound,
each probe within the outbound policy's deadline; so a hanging server costs a round at
most that deadline and never delays the other probes or the actor's messages (rounds
run in a task the actor owns). The results are then written in one transaction:
servers and cards become active or inactive, tools are updated, added and removed,
and the flows holding a tool or a card are re-evaluated. The database's notifications
tell every server's list caches.

A database that cannot be reached is waited for (a doubling pause, logged), as the
catalogue watcher does: an outage is not a crash and spends no restart.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from persistence import (
    A2ARepository,
    MCPRepository,
    NewTool,
    distinct_urls,
    is_database_unavailable,
    new_alias,
    reevaluate_tool_flows,
)
from runtime import Actor, ActorRef, ChildSpec

from ._probe import ProbeError, fetch_agent_card, list_mcp_tools, stored_card_content

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from ._outbound import OutboundPolicy
    from ._probe import ToolInfo

__all__ = [
    "GetRefreshStatistics",
    "RefreshNow",
    "RefreshStatistics",
    "ToolRefresher",
    "ToolRefresherClient",
    "tool_refresher_spec",
]

logger = logging.getLogger(__name__)

_FIRST_PAUSE = 0.2
_LONGEST_PAUSE = 10.0


@dataclass(frozen=True, slots=True)
class RefreshNow:
    """Run a round now; answers an event set once a round that began after it ends."""


@dataclass(frozen=True, slots=True)
class GetRefreshStatistics:
    """Ask for a :class:`RefreshStatistics` snapshot."""


@dataclass(frozen=True, slots=True)
class RefreshStatistics:
    """What the refresher did so far.

    Attributes:
        rounds: Rounds finished.
        running: Whether a round runs now.
        last_round_seconds: How long the last finished round took.
        urls: Distinct URLs probed in the last round.
        outcomes: Probes by ``<mcp|a2a>_<ok|unreachable>``, since the start.
        database_waits: Times a round waited for the database.
        waiting_for_database: Whether it waits for the database now.
    """

    rounds: int
    running: bool
    last_round_seconds: float
    urls: int
    outcomes: dict[str, int]
    database_waits: int
    waiting_for_database: bool


@dataclass(slots=True)
class _Counters:
    rounds: int = 0
    running: bool = False
    last_round_seconds: float = 0.0
    urls: int = 0
    outcomes: dict[str, int] = field(
        default_factory=lambda: {
            "mcp_ok": 0,
            "mcp_unreachable": 0,
            "a2a_ok": 0,
            "a2a_unreachable": 0,
        }
    )
    database_waits: int = 0
    waiting_for_database: bool = False


RefresherMessage = RefreshNow | GetRefreshStatistics


class ToolRefresher(Actor[RefresherMessage]):
    """Probe users' tool sources every ``interval`` seconds and record what answers.

    Args:
        sessionmaker: The database.
        policy: The outbound policy (time-outs, deadline, size, addresses).
        interval: Seconds between the end of a round and the start of the next.
        concurrency: Probes running at once.
        first_pause: First pause while the database is down; doubled up to ``longest_pause``.
        longest_pause: The longest such pause.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        policy: OutboundPolicy,
        *,
        interval: float,
        concurrency: int = 8,
        first_pause: float = _FIRST_PAUSE,
        longest_pause: float = _LONGEST_PAUSE,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy
        self.interval = interval
        self.concurrency = concurrency
        self.first_pause = first_pause
        self.longest_pause = longest_pause
        self._counters = _Counters()
        self._wake = anyio.Event()
        self._next_done = anyio.Event()

    async def on_start(self) -> None:
        self.start_soon(self._run, name=f"{self.name} rounds")

    async def handle(self, message: RefresherMessage) -> Any:
        match message:
            case RefreshNow():
                self._wake.set()
                return self._next_done
            case GetRefreshStatistics():
                return self.statistics()

    def statistics(self) -> RefreshStatistics:
        """Return a snapshot of the counters (does not wait)."""
        c = self._counters
        return RefreshStatistics(
            rounds=c.rounds,
            running=c.running,
            last_round_seconds=c.last_round_seconds,
            urls=c.urls,
            outcomes=dict(c.outcomes),
            database_waits=c.database_waits,
            waiting_for_database=c.waiting_for_database,
        )

    async def _run(self) -> None:
        while True:
            done = self._next_done
            # A request that comes while this round runs waits for the next one: it may
            # be about a server added after this round listed the URLs.
            self._next_done = anyio.Event()
            self._wake = anyio.Event()
            self._counters.running = True
            started = time.monotonic()
            try:
                await self._round()
            finally:
                self._counters.running = False
            self._counters.rounds += 1
            self._counters.last_round_seconds = time.monotonic() - started
            done.set()
            with anyio.move_on_after(self.interval):
                await self._wake.wait()

    async def _round(self) -> None:
        async def read_urls() -> Any:
            async with self.sessionmaker() as session:
                return await distinct_urls(session)

        urls = await self._with_database(read_urls)
        self._counters.urls = len(urls.mcp) + len(urls.a2a)
        tools: dict[str, list[ToolInfo] | None] = {}
        cards: dict[str, dict[str, Any] | None] = {}
        limiter = anyio.CapacityLimiter(self.concurrency)
        async with anyio.create_task_group() as group:
            for url in urls.mcp:
                group.start_soon(self._probe_mcp, url, tools, limiter)
            for url in urls.a2a:
                group.start_soon(self._probe_a2a, url, cards, limiter)

        async def write() -> None:
            async with self.sessionmaker.begin() as session:
                servers = MCPRepository(session)
                for url, listed in tools.items():
                    await servers.set_reachable(url, None if listed is None else new_tools(listed))
                agents = A2ARepository(session)
                for url, card in cards.items():
                    content = None if card is None else stored_card_content(card, url)
                    await agents.set_reachable(url, content)
                changed = await reevaluate_tool_flows(session)
            if changed:
                logger.info("tool refresh: %d flows changed activity", changed)

        await self._with_database(write)

    async def _probe_mcp(
        self, url: str, into: dict[str, list[ToolInfo] | None], limiter: anyio.CapacityLimiter
    ) -> None:
        async with limiter:
            try:
                into[url] = await list_mcp_tools(url, self.policy)
                self._counters.outcomes["mcp_ok"] += 1
            except ProbeError as exc:
                logger.info("MCP server unreachable: %s (%s)", url, exc.__cause__ or exc)
                into[url] = None
                self._counters.outcomes["mcp_unreachable"] += 1

    async def _probe_a2a(
        self, url: str, into: dict[str, dict[str, Any] | None], limiter: anyio.CapacityLimiter
    ) -> None:
        async with limiter:
            try:
                into[url] = await fetch_agent_card(url, self.policy)
                self._counters.outcomes["a2a_ok"] += 1
            except ProbeError as exc:
                logger.info("A2A agent unreachable: %s (%s)", url, exc.__cause__ or exc)
                into[url] = None
                self._counters.outcomes["a2a_unreachable"] += 1

    async def _with_database(self, work: Any) -> Any:
        """Run ``work()``, waiting out an outage of the database with a doubling pause."""
        pause = self.first_pause
        while True:
            try:
                result = await work()
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                self._counters.database_waits += 1
                self._counters.waiting_for_database = True
                logger.warning("tool refresh waits for the database (%r)", exc)
                await anyio.sleep(pause)
                pause = min(pause * 2, self.longest_pause)
                continue
            self._counters.waiting_for_database = False
            return result


def new_tools(listed: Iterable[ToolInfo]) -> list[NewTool]:
    """Return the rows to store for the tools a server listed, each with a new alias."""
    return [
        NewTool(
            name=tool.name,
            alias=new_alias(tool.name),
            description=tool.description,
            input_schema=tool.input_schema,
            annotations=tool.annotations,
        )
        for tool in listed
    ]


class ToolRefresherClient:
    """Typed client of a :class:`ToolRefresher`."""

    def __init__(self, ref: ActorRef[RefresherMessage]) -> None:
        self._ref = ref

    async def refresh(self) -> None:
        """Ask for a round now and wait until one that began after the request ends."""
        done: anyio.Event = await self._ref.ask(RefreshNow())
        await done.wait()

    async def statistics(self) -> RefreshStatistics:
        """Return the refresher's counters."""
        stats: RefreshStatistics = await self._ref.ask(GetRefreshStatistics())
        return stats


def tool_refresher_spec(
    sessionmaker: async_sessionmaker[AsyncSession],
    policy: OutboundPolicy,
    *,
    interval: float,
    concurrency: int = 8,
    name: str = "tools",
) -> ChildSpec:
    """Return the child spec of a :class:`ToolRefresher`."""
    return ChildSpec(
        name,
        lambda: ToolRefresher(sessionmaker, policy, interval=interval, concurrency=concurrency),
        shutdown=2.0,
    )
