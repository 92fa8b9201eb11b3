"""Prometheus metrics of one app: HTTP traffic, chat turns, the tree and its actors.

Each app has its own `CollectorRegistry` (no process-wide globals, so tests and
several apps in one process never share counters). Counters that events drive
(requests, turns) are updated as they happen; gauges that describe state (mailbox
depth, agents connected, buffered log rows) are read when `/metrics` is scraped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Quart, Response, g, request

if TYPE_CHECKING:
    from runtime import ActorInfo, ActorSystem, SupervisorInfo

__all__ = ["CONTENT_TYPE", "Metrics", "StatsProbe", "install_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

StatsProbe = Callable[[], Awaitable[dict[str, float]]]
"""An async source of gauges read at scrape time, e.g. ``{"agents_connected": 3}``."""

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TURN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The metrics of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "genai_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "genai_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.websockets_open = Gauge(
            "genai_frontend_websockets_open", "Front-end WebSockets open now", registry=r
        )
        self.chat_turns = Counter(
            "genai_chat_turns", "Chat turns finished, by outcome", ["outcome"], registry=r
        )
        self.chat_latency = Histogram(
            "genai_chat_turn_duration_seconds",
            "Time from a front-end message to its reply",
            buckets=_TURN_BUCKETS,
            registry=r,
        )
        self.master_errors = Counter(
            "genai_master_agent_errors",
            "Master-agent invocations that failed, by kind (not_active, failed, deadline, router)",
            ["kind"],
            registry=r,
        )
        self._tree = _TreeCollector()
        r.register(self._tree)
        self._probes: dict[str, StatsProbe] = {}
        self._probed: dict[str, Gauge] = {}

    def watch_system(self, system: ActorSystem) -> None:
        """Export the tree's actors (mailbox depth, restarts, dead letters) at each scrape."""
        self._tree.system = system

    def set_process(self, process_id: str, *, hostname: str, pid: int, owns_router: bool) -> None:
        """Export which process this is (``genai_process_info``, always 1), so that the
        series of several processes behind one balancer can be told apart and joined."""
        info = Gauge(
            "genai_process_info",
            "This server process: its id (as /health and the chat turns show it), host, pid",
            ["process_id", "hostname", "pid", "owns_router"],
            registry=self.registry,
        )
        info.labels(process_id, hostname, str(pid), str(owns_router).lower()).set(1)

    def add_probe(self, name: str, probe: StatsProbe, description: str) -> None:
        """Read the gauges ``genai_<name>_<key>`` from `probe` at each scrape."""
        self._probes[name] = probe
        self._probed[name] = Gauge(f"genai_{name}", description, ["stat"], registry=self.registry)

    def observe_turn(self, outcome: str, seconds: float) -> None:
        """Count one finished chat turn (``ok``, ``error``, ``deadline``...)."""
        self.chat_turns.labels(outcome).inc()
        self.chat_latency.observe(seconds)

    async def render(self) -> bytes:
        """Read the probes and return the exposition text."""
        for name, probe in self._probes.items():
            gauge = self._probed[name]
            try:
                values = await probe()
            except Exception:  # a restarting actor has no statistics: report none
                continue
            for key, value in values.items():
                gauge.labels(key).set(value)
        return generate_latest(self.registry)


class _TreeCollector(Collector):
    """Turns the supervision tree snapshot into per-actor samples."""

    def __init__(self) -> None:
        self.system: ActorSystem | None = None

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        depth = GaugeMetricFamily(
            "genai_actor_mailbox_depth", "Messages waiting in an actor's mailbox", labels=["actor"]
        )
        capacity = GaugeMetricFamily(
            "genai_actor_mailbox_capacity", "Bound of an actor's mailbox", labels=["actor"]
        )
        restarts = CounterMetricFamily(
            "genai_actor_restarts", "Restarts of an actor or supervisor", labels=["actor"]
        )
        dead = CounterMetricFamily(
            "genai_actor_dead_letters", "Messages an actor never handled", labels=["actor"]
        )
        running = GaugeMetricFamily(
            "genai_actor_running", "1 while an actor or supervisor runs", labels=["actor", "kind"]
        )
        failed = GaugeMetricFamily(
            "genai_system_failed", "1 when the root exceeded its restart intensity"
        )
        system = self.system
        if system is not None:
            for path, kind, sample in _samples(system.snapshot()):
                restarts.add_metric([path], sample.restarts)
                running.add_metric([path, kind], sample.running)
                if sample.has_mailbox:
                    depth.add_metric([path], sample.depth)
                    capacity.add_metric([path], sample.capacity)
                    dead.add_metric([path], sample.dead_letters)
            failed.add_metric([], 1.0 if system.failed else 0.0)
        yield from (depth, capacity, restarts, dead, running, failed)


@dataclasses.dataclass(slots=True)
class _Sample:
    """One series' values: an actor's, or the sums over a dynamic supervisor's children."""

    restarts: int = 0
    running: float = 0.0
    has_mailbox: bool = False
    depth: int = 0
    capacity: int = 0
    dead_letters: int = 0

    def add(self, info: ActorInfo | SupervisorInfo) -> None:
        self.restarts += info.restarts
        self.running += 1.0 if info.state.value == "running" else 0.0
        mailbox = getattr(info, "mailbox", None)
        if mailbox is not None:
            self.has_mailbox = True
            self.depth += mailbox.depth
            self.capacity += mailbox.capacity
            self.dead_letters += mailbox.dead_letters


def _samples(info: ActorInfo | SupervisorInfo) -> Iterator[tuple[str, str, _Sample]]:
    """Yield ``(path, kind, sample)`` per actor and supervisor of the tree, except that
    the children of a dynamic supervisor (one per socket, per chat session...) are one
    series, ``<supervisor path>.*``, of their sums: ``running`` counts those running.
    A series per socket made 25,000 lines at 5,000 agents, and stalled each scrape."""
    sample = _Sample()
    sample.add(info)
    yield info.path or "root", info.kind, sample
    children: tuple[ActorInfo | SupervisorInfo, ...] = tuple(getattr(info, "children", ()))
    if info.kind == "dynamic_supervisor":
        total = _Sample()
        for child in children:
            total.add(child)
        kinds = {child.kind for child in children} or {"actor"}
        yield f"{info.path}.*", kinds.pop() if len(kinds) == 1 else "mixed", total
        return
    for child in children:
        yield from _samples(child)


def install_metrics(app: Quart, metrics: Metrics) -> None:
    """Time and count every HTTP request of `app` by route template and status."""

    @app.before_request
    async def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    async def _count(response: Response) -> Response:
        started = g.get("metrics_started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            method = request.method
            metrics.http_requests.labels(method, rule, str(response.status_code)).inc()
            metrics.http_latency.labels(method, rule).observe(time.perf_counter() - started)
        return response
