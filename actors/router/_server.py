"""Run the router on its own: an actor system holding just the router's children."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

from runtime import open_actor_system

from ._connection import DEFAULT_BACKEND_OUTBOX_CAPACITY
from ._hub import DEFAULT_PORT, WS_PATH, RouterConfig, RouterHub, router_children
from ._table import DEFAULT_MAX_FRAME_BYTES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._budget import LogLimits
    from ._identity import AgentVerifier, ApiKeys

__all__ = ["RunningRouter", "open_router"]


@dataclasses.dataclass(frozen=True, slots=True)
class RunningRouter:
    """A router serving on ``host:port``; ``url`` is the agents' ``ROUTER_WS_URL``."""

    host: str
    port: int
    hub: RouterHub

    @property
    def url(self) -> str:
        """The WebSocket URL of the router, ``ws://host:port/ws``."""
        return f"ws://{self.host}:{self.port}{WS_PATH}"


@contextlib.asynccontextmanager
async def open_router(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    keys: ApiKeys | None = None,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    outbox_capacity: int = 1000,
    backend_outbox_capacity: int = DEFAULT_BACKEND_OUTBOX_CAPACITY,
    replay_registrations: bool = True,
    ping_interval: float | None = 20,
    verify_agent: AgentVerifier | None = None,
    log_limits: LogLimits | None = None,
    sweep_interval: float = 1.0,
) -> AsyncIterator[RunningRouter]:
    """Serve the router at ``ws://host:port/ws`` for the duration of the block.

    The arguments are those of :class:`RouterConfig`; ``port=0`` picks a free port
    (read it from the yielded value). Without ``verify_agent`` the router trusts the
    ``sub`` of agent tokens and every ``send()`` socket, as upstream's does: run it so
    only where the back-end refuses bad tokens at registration and the agents are
    trusted.

    Yields:
        The running router. Leaving the block closes every connection (code 1001)
        and waits for their handlers.

    Raises:
        OSError: The address cannot be bound.
    """
    config = RouterConfig(
        host,
        port,
        keys,
        max_frame_bytes=max_frame_bytes,
        outbox_capacity=outbox_capacity,
        backend_outbox_capacity=backend_outbox_capacity,
        replay_registrations=replay_registrations,
        ping_interval=ping_interval,
        verify_agent=verify_agent,
        log_limits=log_limits,
        sweep_interval=sweep_interval,
    )
    hubs: list[RouterHub] = []

    def make_hub() -> RouterHub:
        hubs.append(RouterHub(config))
        return hubs[-1]

    *supervisors, hub = router_children(config)
    specs = [*supervisors, dataclasses.replace(hub, factory=make_hub)]
    async with open_actor_system(*specs, name="router"):
        running = hubs[-1]
        assert running.port is not None  # set by on_start
        yield RunningRouter(host, running.port, running)
