"""Agent token checks, grouped: the sockets that connect while one check runs share the
next one.

Checking a token costs a database round trip; a storm of thousands of agents
reconnecting at once would queue as many. :class:`TokenChecks` runs one check at a time
and hands it every token that arrived meanwhile (group commit, as a database groups
transactions into one flush): under load a check serves hundreds of sockets, and alone
a socket waits for nothing but its own.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from ._identity import AgentVerifier, VerifiedAgent

__all__ = ["TokenChecks"]


@dataclasses.dataclass(slots=True)
class _Batch:
    tokens: list[str] = dataclasses.field(default_factory=list)
    results: list[VerifiedAgent | None] = dataclasses.field(default_factory=list)
    done: anyio.Event = dataclasses.field(default_factory=anyio.Event)
    error: Exception | None = None


class TokenChecks:
    """Check agent tokens through ``verifier``, many at a time.

    Args:
        verifier: Checks a list of tokens at once.
        max_batch: The most tokens one call checks.
    """

    def __init__(self, verifier: AgentVerifier, *, max_batch: int = 1000) -> None:
        self._verifier = verifier
        self._max_batch = max_batch
        self._open: _Batch | None = None
        self._running = anyio.Lock()

    async def verify(self, token: str) -> VerifiedAgent | None:
        """Return what the token proves, or ``None`` if it is not valid.

        Waits for the check running now, if any, then for the one holding this token.

        Raises:
            Exception: Whatever the verifier raised for the batch.
        """
        batch = self._open
        leader = batch is None or len(batch.tokens) >= self._max_batch
        if leader:
            batch = self._open = _Batch()
        assert batch is not None
        index = len(batch.tokens)
        batch.tokens.append(token)
        if leader:
            try:
                # Tokens arriving while the running check holds the lock join this batch.
                async with self._running:
                    if self._open is batch:
                        self._open = None
                    batch.results = list(await self._verifier(batch.tokens))
            except Exception as exc:
                batch.error = exc
                raise
            finally:
                if self._open is batch:
                    self._open = None
                if batch.error is None and len(batch.results) != len(batch.tokens):
                    # The leader was cancelled (the router stops): nobody checks them.
                    batch.error = RuntimeError("the token check was abandoned")
                batch.done.set()
        else:
            await batch.done.wait()
            if batch.error is not None:
                raise batch.error
        return batch.results[index]
