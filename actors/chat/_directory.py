"""TurnDirectory: which chat actor runs the turn of a request id, for what others see.

The router sees the master invoke agents and their answers, and the log fan-out sees
agents' logs, each under the turn's ``request_id``; neither knows the conversation's
actor. A running turn registers its request id here, and they report what they saw in
one dictionary look-up (nothing for a request no turn of this process runs). Reports
never wait: a chat actor whose mailbox is full misses the step, not the router.

With several processes, the router runs in one of them and sees the agent steps of
every process's turns: those of a request no turn here runs are handed on
(`forward_to`, the turn relay tells the other processes) and reported there.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runtime import ActorDeadError, MailboxFullError

if TYPE_CHECKING:
    from persistence import LogEntry
    from runtime import ActorRef

__all__ = ["StepReport", "TurnDirectory", "TurnStep"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TurnStep:
    """Something seen of the turn ``request_id`` outside its chat actor (an event)."""

    request_id: uuid.UUID
    kind: str
    data: Mapping[str, Any]


StepReport = Callable[[str, str, Mapping[str, Any]], None]
"""Takes one step: ``(request id, kind, data)``; never waits."""


class TurnDirectory:
    """Request ids of the running turns, and the chat actors that run them."""

    def __init__(self) -> None:
        self._turns: dict[str, ActorRef[Any]] = {}
        self._elsewhere: StepReport | None = None

    def forward_to(self, elsewhere: StepReport | None) -> None:
        """Hand the router's steps of requests no turn here runs to ``elsewhere``."""
        self._elsewhere = elsewhere

    def __len__(self) -> int:
        return len(self._turns)

    def register(self, request_id: uuid.UUID, ref: ActorRef[Any]) -> None:
        self._turns[str(request_id)] = ref

    def forget(self, request_id: uuid.UUID) -> None:
        self._turns.pop(str(request_id), None)

    def report(self, request_id: str, kind: str, data: Mapping[str, Any]) -> None:
        """Tell the turn's actor one step; nothing if no turn here has this id."""
        ref = self._turns.get(request_id)
        if ref is None:
            return
        try:
            ref.tell_nowait(TurnStep(uuid.UUID(request_id), kind, data))
        except (MailboxFullError, ActorDeadError):
            logger.debug("turn %s missed a %s step", request_id, kind)

    def report_step(self, request_id: str, kind: str, data: Mapping[str, Any]) -> None:
        """The router's observer: tell the turn's actor, or hand the step on if no turn
        here has this id (it may be another process's)."""
        if request_id in self._turns:
            self.report(request_id, kind, data)
        elif self._elsewhere is not None:
            self._elsewhere(request_id, kind, data)

    def report_log(self, log: LogEntry) -> None:
        """Tell a stored agent log to its turn's actor (the log fan-out's observer)."""
        if self._turns:
            data = {"agent_id": log.agent_id, "log_type": log.log_level, "message": log.message}
            self.report(str(log.request_id), "agent_log", data)
