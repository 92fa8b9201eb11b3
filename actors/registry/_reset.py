"""Marking every agent inactive, for the process that owns the router.

No agent can be connected to a router that is not listening yet, nor to one that has
stopped: its owner marks every agent inactive before it listens and after it stops,
and the back-ends on it never do (``RegistryConfig.owns_router``). The embedded router's
owner does it through its registry at start (`RegistryActor`); the standalone router,
which has no registry, calls `mark_agents_inactive`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio

from persistence import AgentRepository
from runtime import Backoff

from ._store import is_outage

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["mark_agents_inactive"]

logger = logging.getLogger(__name__)

_RETRY = Backoff(initial=0.1, maximum=2.0, reset_after=0.0)


async def mark_agents_inactive(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    within: float,
    retry: Backoff = _RETRY,
) -> int | None:
    """Mark every agent inactive, waiting out an outage of the database for a while.

    Args:
        sessionmaker: Opens the session of the one statement.
        within: Seconds to keep trying while the database cannot be reached.
        retry: The pause between two attempts.

    Returns:
        How many agents were active, or None when the database did not answer within
        ``within`` seconds (the agents are left as they are; logged).

    Raises:
        Exception: What the database refuses other than an outage (a schema without the
            agents table, a bad password): a set-up to fix, not to wait out.
    """
    attempt = 0
    with anyio.move_on_after(within):
        while True:
            try:
                async with sessionmaker.begin() as db:
                    return await AgentRepository(db).mark_all_inactive()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                if attempt == 0:
                    logger.warning("database unreachable (%r): waiting to reset the agents", exc)
            await anyio.sleep(retry.delay(attempt))
            attempt += 1
    logger.error(
        "the database did not answer within %.0f s: agents left as they are (those not "
        "connected stay listed as active until they connect again)",
        within,
    )
    return None
