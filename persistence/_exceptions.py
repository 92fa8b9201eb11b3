"""Errors raised by persistence.

Class tree::

    PersistenceError
    ├── NotFoundError
    ├── AlreadyExistsError
    ├── MigrationError
    ├── EmbeddedPostgresError
    └── ApiKeyDecryptionError
"""

from __future__ import annotations

__all__ = [
    "AlreadyExistsError",
    "ApiKeyDecryptionError",
    "EmbeddedPostgresError",
    "MigrationError",
    "NotFoundError",
    "PersistenceError",
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


class MigrationError(PersistenceError):
    """Raised when the schema cannot be read or brought up to date."""


class EmbeddedPostgresError(PersistenceError):
    """Raised when the embedded PostgreSQL server fails to start or stop."""


class ApiKeyDecryptionError(PersistenceError):
    """Raised when a stored API key cannot be decrypted with any configured key."""
