"""What every repository shares: the session it wraps and driver-error mapping."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from .._exceptions import AlreadyExistsError, NotFoundError, PersistenceError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Repository", "apply_changes"]

_UNIQUE_VIOLATION = "23505"
_FOREIGN_KEY_VIOLATION = "23503"


class Repository:
    """Base of the repositories: wraps one ``AsyncSession`` and never commits.

    Lookups (``get…``) return None for a row that is missing or not the owner's;
    writes to a named row (``patch``, ``delete``) raise :class:`NotFoundError` instead.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _ensure_absent(self, model: type[Any], key: object, constraint: str) -> None:
        """Raise AlreadyExistsError if a row with primary key *key* exists.

        Checked before adding a row with a caller-chosen key: the unit of work must not
        hold two objects with one identity.
        """
        if await self.session.get(model, key) is not None:
            raise AlreadyExistsError(f"already exists ({constraint})", constraint=constraint)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """Run a write in a savepoint and flush it, translating constraint violations.

        The savepoint keeps the caller's transaction usable after an
        :class:`AlreadyExistsError`.
        """
        try:
            async with self.session.begin_nested():
                yield
        except IntegrityError as exc:
            raise _map_integrity_error(exc) from exc


def _map_integrity_error(exc: IntegrityError) -> PersistenceError:
    cause = exc.orig.__cause__ if exc.orig is not None else None
    sqlstate = getattr(cause, "sqlstate", None) or getattr(exc.orig, "sqlstate", None)
    constraint = getattr(cause, "constraint_name", None)
    if sqlstate == _UNIQUE_VIOLATION:
        return AlreadyExistsError(f"already exists ({constraint})", constraint=constraint)
    if sqlstate == _FOREIGN_KEY_VIOLATION:
        return NotFoundError(f"a referenced row does not exist ({constraint})")
    return PersistenceError(str(exc.orig))


def apply_changes(obj: object, changes: dict[str, Any], allowed: Iterable[str]) -> None:
    """Set the given attributes on *obj*; only the names in *allowed* may change.

    Raises:
        TypeError: a name outside *allowed* was given.
    """
    allowed = frozenset(allowed)
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"cannot change {sorted(unknown)}")
    for name, value in changes.items():
        setattr(obj, name, value)
