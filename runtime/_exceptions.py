"""Errors raised by the actor runtime.

The class tree::

    ActorError
    ├── ActorDeadError          the actor is stopped, or stopped before replying
    ├── MailboxFullError        the mailbox refused a message under its overflow policy
    ├── NameTakenError          a registry name is already bound to another ref
    ├── RestartIntensityError   a supervisor restarted its children too often
    └── ActivationLimitError    a dynamic supervisor is at its maximum of live children

Timeouts raise the built-in `TimeoutError`, as `anyio.fail_after` does.
"""

from __future__ import annotations

__all__ = [
    "ActivationLimitError",
    "ActorDeadError",
    "ActorError",
    "MailboxFullError",
    "NameTakenError",
    "RestartIntensityError",
]


class ActorError(Exception):
    """Base class of every error the runtime raises."""


class ActorDeadError(ActorError):
    """Raised when a message is asked of a stopped actor, or the actor stops before replying."""


class MailboxFullError(ActorError):
    """Raised to a sender when a full mailbox refuses its message under its overflow policy."""


class NameTakenError(ActorError):
    """Raised when registering a name that is already bound to another ref."""


class RestartIntensityError(ActorError):
    """Raised by a supervisor that exceeded its restart intensity; it fails to its parent."""


class ActivationLimitError(ActorError):
    """Raised by `DynamicSupervisor.get_or_start` when `max_children` actors are already live."""
