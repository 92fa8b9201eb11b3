"""The base of repositories that run their statements straight on the driver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .._db import bound_engine, open_driver_connection

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

__all__ = ["DriverRepository"]


class DriverRepository:
    """Statements on a pooled connection's driver, one checkout per call.

    Args:
        sessionmaker: Where connections come from (the server's pool).
    """

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._engine = bound_engine(sessionmaker)

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[Any]:
        async with open_driver_connection(self._engine) as driver:
            yield driver
