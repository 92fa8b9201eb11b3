"""The edges a chat actor talks through; tests pass fakes (STYLE.md §7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["ApiKeyDecrypter", "MasterAnswer", "MasterInvoker"]


class MasterAnswer(Protocol):
    """The master agent's reply: its ``response`` and the ``execution_time`` it reported."""

    @property
    def response(self) -> Any: ...

    @property
    def execution_time(self) -> float: ...


class MasterInvoker(Protocol):
    """Invoke the master agent through the router (`actors.session.RouterSessionClient`)."""

    async def invoke_master(
        self,
        payload: Mapping[str, Any],
        *,
        request_id: str,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the call's contract
    ) -> MasterAnswer:
        """Send ``payload`` to the master and wait for its reply, at most ``timeout`` s.

        Raises:
            actors.session.MasterAgentError: No usable reply; ``str()`` is the user text.
        """
        ...


class ApiKeyDecrypter(Protocol):
    """Read a stored provider API key (`persistence.ApiKeyCipher`)."""

    async def decrypt_async(self, ciphertext: str) -> str:
        """Return the plain key; waits for a worker thread.

        Raises:
            persistence.ApiKeyDecryptionError: The text cannot be decrypted.
        """
        ...
