"""A supervised actor runtime on anyio: actors, mailboxes, OTP supervisors, registry.

Runs on asyncio and trio. Start with `open_actor_system`.
"""

from __future__ import annotations

from ._actor import Actor as Actor
from ._actor import ActorRef as ActorRef
from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._dynamic import DynamicSupervisor as DynamicSupervisor
from ._exceptions import ActivationLimitError as ActivationLimitError
from ._exceptions import ActorDeadError as ActorDeadError
from ._exceptions import ActorError as ActorError
from ._exceptions import MailboxFullError as MailboxFullError
from ._exceptions import NameTakenError as NameTakenError
from ._exceptions import RestartIntensityError as RestartIntensityError
from ._introspection import ActorInfo as ActorInfo
from ._introspection import FailureInfo as FailureInfo
from ._introspection import SupervisorInfo as SupervisorInfo
from ._mailbox import MailboxStatistics as MailboxStatistics
from ._mailbox import OverflowPolicy as OverflowPolicy
from ._messages import Down as Down
from ._registry import Registry as Registry
from ._spec import Backoff as Backoff
from ._spec import ChildSpec as ChildSpec
from ._spec import Directive as Directive
from ._spec import Restart as Restart
from ._spec import RestartIntensity as RestartIntensity
from ._spec import Strategy as Strategy
from ._state import ActorState as ActorState
from ._supervisor import Supervisor as Supervisor
from ._system import ActorSystem as ActorSystem
from ._system import DeadLetter as DeadLetter
from ._system import open_actor_system as open_actor_system

__all__ = [
    "ActivationLimitError",
    "Actor",
    "ActorDeadError",
    "ActorError",
    "ActorInfo",
    "ActorRef",
    "ActorState",
    "ActorSystem",
    "Backoff",
    "ChildSpec",
    "Clock",
    "DeadLetter",
    "Directive",
    "Down",
    "DynamicSupervisor",
    "FailureInfo",
    "MailboxFullError",
    "MailboxStatistics",
    "NameTakenError",
    "OverflowPolicy",
    "Registry",
    "Restart",
    "RestartIntensity",
    "RestartIntensityError",
    "Strategy",
    "Supervisor",
    "SupervisorInfo",
    "SystemClock",
    "open_actor_system",
]
