"""The edges a chat actor talks through; tests pass fakes (STYLE.md §7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from runtime import ActorRef

    from ..session import MasterReplied

__all__ = ["ApiKeyDecrypter", "MasterInvoker"]


class MasterInvoker(Protocol):
    """Invoke the master agent through the router (`actors.session.RouterSessionClient`).

    The outcome of an invocation comes back to the chat actor as a message; the invoker
    owns its deadline.
    """

    @property
    def ref(self) -> ActorRef[Any] | None:
        """The actor that answers invocations, which chat actors watch: its ``Down``
        means no reply will come. None: nothing to watch."""
        ...

    async def invoke_master(
        self,
        payload: Mapping[str, Any],
        *,
        request_id: str,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - the deadline is part of the call's contract
        reply_to: ActorRef[MasterReplied],
    ) -> None:
        """Start sending ``payload`` to the master; does not wait for the reply.

        ``reply_to`` gets exactly one `actors.session.MasterReplied` (the reply, or a
        `actors.session.MasterAgentError` whose ``str()`` is the user's text, a
        timeout once ``timeout`` seconds have passed), unless `ref` goes down first.

        Raises:
            actors.session.MasterAgentError: It cannot be started; ``str()`` is the user text.
        """
        ...

    def cancel_master(self, request_id: str) -> None:
        """Stop the invocation ``request_id``; no reply follows. Does not wait."""
        ...


class ApiKeyDecrypter(Protocol):
    """Read a stored provider API key (`persistence.ApiKeyCipher`)."""

    async def decrypt_async(self, ciphertext: str) -> str:
        """Return the plain key; waits for a worker thread.

        Raises:
            persistence.ApiKeyDecryptionError: The text cannot be decrypted.
        """
        ...
