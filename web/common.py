"""Shared response helpers and field types of the HTTP API."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, PlainSerializer, TypeAdapter
from quart import Response, current_app

from persistence import bound_engine, open_driver_connection

from .services import services

if TYPE_CHECKING:
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "PageQuery",
    "RenderCache",
    "Timestamp",
    "app_render_cache",
    "catalogue_list_response",
    "catalogue_transaction",
    "empty_response",
    "format_timestamp",
    "json_array",
    "json_response",
    "read_driver",
    "read_session",
]

# PostgreSQL's OFFSET is a bigint.
_MAX_OFFSET = 2**63 - 1


def format_timestamp(value: datetime) -> str:
    """Render ``value`` naive, in UTC, with exactly six fraction digits."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds")


Timestamp = Annotated[
    datetime,
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
    Field(json_schema_extra={"example": "2026-11-25T12:00:20.524593"}),
]
"""A naive ISO-8601 datetime with six fraction digits, e.g. ``2026-11-25T12:00:20.524593``."""


class PageQuery(BaseModel):
    """The ``offset`` and ``limit`` query parameters every list takes."""

    offset: int = Field(0, ge=0, le=_MAX_OFFSET)
    limit: int = Field(100, ge=0, le=1000)


_adapters: dict[Any, TypeAdapter[Any]] = {}


def json_response(value: Any, status_code: int = 200, *, model: Any = None) -> Response:
    """Serialise ``value`` (a model, a list of models, or plain data) as a JSON response.

    Args:
        value: what to send.
        status_code: the HTTP status.
        model: the type to serialise ``value`` as; by default ``type(value)``.
    """
    if isinstance(value, BaseModel) and model is None:
        body = value.__pydantic_serializer__.to_json(value)
    else:
        kind = model if model is not None else type(value)
        adapter = _adapters.get(kind)
        if adapter is None:
            adapter = _adapters[kind] = TypeAdapter(kind)
        body = adapter.dump_json(value)
    return Response(body, status=status_code, content_type="application/json")


def json_array(items: Iterable[bytes]) -> bytes:
    """Join already serialised JSON values into one array, as :func:`json_response` writes it."""
    return b"[" + b",".join(items) + b"]"


ValueT = TypeVar("ValueT")

# What an entry costs besides the bytes ``measure`` counts: the version text, the
# mapping's slot, the value's object.
_ENTRY_OVERHEAD = 256


class RenderCache(Generic[ValueT]):
    """What was rendered from database rows, by row version; the oldest entries go first.

    A version names one committed content of a row (``persistence.ROW_VERSION``), so an
    entry is never stale: changed data has a different version. Callers read the
    versions of what they show from the database on every request, then render only
    what is missing. Memory is bounded by ``max_bytes`` as ``measure`` counts values.
    Entries leave in the order they came (no reordering on a hit, which would cost
    every request): a row still shown once dropped is simply rendered again.
    """

    def __init__(self, *, measure: Callable[[ValueT], int], max_bytes: int) -> None:
        self._measure = measure
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, ValueT] = OrderedDict()

    def get_all(self, versions: Iterable[str]) -> list[ValueT] | None:
        """Return what was rendered for each of ``versions``, or None if any is missing."""
        entries = self._entries
        try:
            return [entries[version] for version in versions]
        except KeyError:
            return None

    def get(self, version: str) -> ValueT | None:
        """Return what was rendered for ``version``, or None."""
        return self._entries.get(version)

    def get_or_render(self, version: str, render: Callable[[], ValueT]) -> ValueT:
        """Return what was rendered for ``version``, calling ``render()`` if it is missing."""
        value = self._entries.get(version)
        if value is None:
            value = render()
            self.put(version, value)
        return value

    def put(self, version: str, value: ValueT) -> None:
        """Keep ``value`` for ``version``, dropping the oldest entries beyond the bound."""
        size = self._size(version, value)
        if size > self._max_bytes or version in self._entries:
            return
        self._entries[version] = value
        self._bytes += size
        while self._bytes > self._max_bytes:
            self._bytes -= self._size(*self._entries.popitem(last=False))

    def _size(self, version: str, value: ValueT) -> int:
        return self._measure(value) + len(version) + _ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._entries)


def app_render_cache(name: str, create: Callable[[], RenderCache[ValueT]]) -> RenderCache[ValueT]:
    """Return the current app's cache called ``name``, made by ``create()`` on first use.

    One per app: versions name rows of the app's own database.
    """
    cache: RenderCache[ValueT] | None = current_app.extensions.get(name)
    if cache is None:
        cache = current_app.extensions[name] = create()
    return cache


async def catalogue_list_response(
    name: str, user_id: UUID, params: Hashable, build: Callable[[], Awaitable[bytes]]
) -> Response:
    """Answer a list of the user's agents or flows, from the app's cache when current.

    The answer for ``(user_id, params)`` is kept with the user's catalogue version
    (`persistence.CatalogueVersions`) read before ``build()`` reads the database: it is
    served again, without the database, until the user's agents or flows change,
    whoever changes them. While changes cannot be heard, every request is built.
    """
    version = services().catalogue.current(user_id)
    if version is None:
        return Response(await build(), content_type="application/json")
    cache: RenderCache[bytes] = app_render_cache(name, _new_list_cache)
    key = f"{user_id}|{version[0]}.{version[1]}|{params!r}"
    body = cache.get(key)
    if body is None:
        body = await build()
        cache.put(key, body)
    return Response(body, content_type="application/json")


@asynccontextmanager
async def catalogue_transaction(user_id: UUID) -> AsyncIterator[AsyncSession]:
    """Open a transaction that changes the user's agents or flows.

    When it ends, the user's cached lists go at once, so the caller's next read sees
    its own write; the database's notification, which tells every server, follows.
    """
    try:
        async with services().sessionmaker.begin() as session:
            yield session
    finally:
        services().catalogue.changed(user_id)


def _new_list_cache() -> RenderCache[bytes]:
    # Older versions of an answer are never asked for again; they leave as the cache fills.
    return RenderCache(measure=len, max_bytes=32 * 2**20)


def empty_response(status_code: int = 204) -> Response:
    """Build a response with an empty body (204 by default)."""
    return Response(b"", status=status_code)


@asynccontextmanager
async def read_session() -> AsyncIterator[AsyncSession]:
    """Open a database session for a route that only reads.

    Its statements run in autocommit mode: no ``BEGIN`` and ``ROLLBACK`` round trips
    around them. At PostgreSQL's default isolation (READ COMMITTED) each statement of a
    transaction takes its own snapshot anyway, so the reads see exactly what they would
    inside one. Routes that write use ``sessionmaker.begin()``.
    """
    async with services().sessionmaker() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


@asynccontextmanager
async def read_driver() -> AsyncIterator[Any]:
    """Open a pooled connection's asyncpg connection for a route that only reads.

    Lighter than :func:`read_session` (no session, no transaction to track), for routes
    whose statements run on the driver, as the lists do; each statement commits on its
    own, as under :func:`read_session`.
    """
    async with open_driver_connection(bound_engine(services().sessionmaker)) as driver:
        yield driver
