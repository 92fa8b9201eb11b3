"""What the registry has accepted and not yet written, and how agent events are batched.

Agent events are applied in batches of consecutive events, each agent at most once per
batch: within a batch the order of different agents' events does not matter, and an
agent's second event (a register then an unregister of the same agent) starts the next
batch, so it is applied after the first, as it came.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uuid

    from actors.session import AgentRegistered
    from persistence import NewLog

    from ._rules import AgentClaims

__all__ = ["Accepted", "AgentJob", "Register", "ResetAgents", "Unregister", "next_batch"]


@dataclasses.dataclass(frozen=True, slots=True)
class ResetAgents:
    """Mark every agent inactive (at start: no agent is connected yet)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Register:
    """Store a registration whose JWT signature is valid (the row is checked then)."""

    event: AgentRegistered
    claims: AgentClaims


@dataclasses.dataclass(frozen=True, slots=True)
class Unregister:
    """Mark a disconnected agent and its flows inactive."""

    agent_id: uuid.UUID


AgentJob = ResetAgents | Register | Unregister


class Accepted:
    """What the registry has accepted and not yet written, in order.

    It belongs to the spec, not to one instance, as a chat actor's `Room` does: a
    registry restarted after a crash goes on with the same agent events and logs
    (only the one the crash happened on is dropped), and the start-up reset of every
    agent runs once per process, not again over agents that are still connected.

    Attributes:
        jobs: Agent events (and the start-up reset), in the order they came.
        buffer: Logs, in the order they came.
        batch: The first logs of the buffer with their ids, fixed at the first attempt.
        reset: Whether the start-up reset was queued already.
        singly: How many of the first jobs go one at a time: those of a batch the
            database refused, so that only a job it refuses alone is dropped.
    """

    __slots__ = ("batch", "buffer", "jobs", "reset", "singly")

    def __init__(self) -> None:
        self.jobs: collections.deque[AgentJob] = collections.deque()
        self.buffer: collections.deque[NewLog] = collections.deque()
        self.batch: tuple[list[NewLog], list[int]] | None = None
        self.reset = False
        self.singly = 0


def next_batch(jobs: collections.deque[AgentJob], limit: int) -> list[AgentJob]:
    """Return the first jobs that can be applied together (at least one; none removed).

    A batch is a run of registrations and disconnects of distinct agents, at most
    ``limit`` long; the start-up reset goes alone.
    """
    first = jobs[0]
    if isinstance(first, ResetAgents) or limit <= 1:
        return [first]
    batch: list[AgentJob] = []
    seen: set[uuid.UUID] = set()
    for job in itertools.islice(jobs, limit):
        if isinstance(job, ResetAgents):
            break
        agent = job.claims.agent_id if isinstance(job, Register) else job.agent_id
        if agent in seen:
            break
        seen.add(agent)
        batch.append(job)
    return batch
