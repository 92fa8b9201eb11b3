"""Errors raised by persistence.

Class tree::

    PersistenceError
    ├── NotFoundError
    ├── AlreadyExistsError
    ├── MigrationError
    ├── EmbeddedPostgresError
    ├── ApiKeyDecryptionError
    └── TurnConflictError
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "ApiKeyDecryptionError",
    "EmbeddedPostgresError",
    "MigrationError",
    "NotFoundError",
    "PersistenceError",
    "TurnConflictError",
]


class PersistenceError(Exception):
    """Base class of every error raised by persistence."""


class NotFoundError(PersistenceError):
    """Raised when a row the caller names does not exist or is not the caller's."""


class AlreadyExistsError(PersistenceError):
    """Raised when a write would break a unique constraint.

    Attributes:
        constraint: the name of the violated constraint, when the driver reports it.
    """

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class TurnConflictError(PersistenceError):
    """Raised when a turn's statement would break the one-turn-at-a-time rule of its
    conversation, with several processes on one database; it stored nothing.

    Attributes:
        running: Another turn of the conversation is running (in another process);
            False: event numbers this turn chose are taken by another turn's events
            (this process's numbering is behind).
    """

    def __init__(self, message: str, *, running: bool) -> None:
        super().__init__(message)
        self.running = running


class MigrationError(PersistenceError):
    """Raised when the schema cannot be read or brought up to date."""


class EmbeddedPostgresError(PersistenceError):
    """Raised when the embedded PostgreSQL server fails to start or stop."""


class ApiKeyDecryptionError(PersistenceError):
    """Raised when a stored API key cannot be decrypted with any configured key."""
