"""The embedded router's agent token check: the signatures, then the agents' rows.

The router calls it with every token that arrived while its previous check ran
(`actors.router.TokenChecks`), so a storm of reconnecting agents costs a few queries.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

import anyio

from actors.router import AgentVerifier, VerifiedAgent
from persistence import bound_engine, is_database_unavailable, open_driver_connection

from ._rules import decode_agent_jwt

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["agent_verifier"]

logger = logging.getLogger(__name__)

VERIFY_DATABASE_SECONDS = 2.0
"""Seconds the check waits for the agents' rows before it trusts the signatures alone."""
# One driver statement for a whole batch of tokens: an ORM session cost more than the
# check itself in an agent storm.
_AGENT_OWNERS = "SELECT id, creator_id FROM agents WHERE id = ANY($1::uuid[])"


def agent_verifier(
    secret: str, algorithm: str, sessionmaker: async_sessionmaker[AsyncSession] | Any
) -> AgentVerifier:
    """Return the check of agent tokens for the embedded router.

    A token is valid when it is signed with ``secret`` (`decode_agent_jwt`) and its agent's
    row exists with ``id = sub`` and ``creator_id = user_id``, all rows read in one query.
    When the database is down or slower than `VERIFY_DATABASE_SECONDS`, a token we signed
    is enough to connect: the registry still refuses the agent once its row can be read.

    Args:
        secret: The key agent tokens are signed with (``JWT_SECRET_KEY``).
        algorithm: Their algorithm (``HASH_ALGORITHM``).
        sessionmaker: Bound to the engine whose pool the query uses.
    """

    async def verify(tokens: list[str]) -> list[VerifiedAgent | None]:
        claims = [decode_agent_jwt(token, secret, algorithm) for token in tokens]
        ids = list({c.agent_id for c in claims if c is not None})
        owners: dict[uuid.UUID, uuid.UUID] | None = None
        if ids:
            with anyio.move_on_after(VERIFY_DATABASE_SECONDS):
                try:
                    async with open_driver_connection(bound_engine(sessionmaker)) as conn:
                        rows = await conn.fetch(_AGENT_OWNERS, ids)
                    owners = {row["id"]: row["creator_id"] for row in rows}
                except Exception as exc:
                    if not (is_database_unavailable(exc) or isinstance(exc, OSError)):
                        raise
            if owners is None:
                logger.warning("%d agent tokens checked without their rows", len(ids))
        return [
            None
            if c is None or (owners is not None and owners.get(c.agent_id) != c.user_id)
            else VerifiedAgent(str(c.agent_id), str(c.user_id))
            for c in claims
        ]

    return verify
