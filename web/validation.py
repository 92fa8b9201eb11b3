"""Request validation that answers the contract's exact 422 bodies.

quart-schema's decorators raise a 400 and lose where the error came from; these
decorators validate with pydantic, prefix every ``loc`` with ``body``, ``query``,
``path`` or ``header`` and raise :class:`~web.errors.RequestValidationError`. They also
set quart-schema's attributes, so the routes stay documented in ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, TypeAdapter, ValidationError
from quart import current_app, request
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
    QUART_SCHEMA_RESPONSE_ATTRIBUTE,
    DataSource,
)
from werkzeug.exceptions import RequestEntityTooLarge, RequestTimeout

from .errors import Location, RequestValidationError, validation_errors

__all__ = [
    "EMPTY_RESPONSE_ATTRIBUTE",
    "NUL_MESSAGE",
    "PATH_TYPES_ATTRIBUTE",
    "documents_multipart",
    "parse_json_body",
    "responds",
    "validate_body",
    "validate_form",
    "validate_path",
    "validate_query",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

PATH_TYPES_ATTRIBUTE = "_genai_path_types"
EMPTY_RESPONSE_ATTRIBUTE = "_genai_empty_response"
NUL_MESSAGE = "Value error, Input must not contain NUL characters"

_JSON_SUBTYPES = ("json",)


def _nul_errors(value: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    # PostgreSQL text cannot hold U+0000: refuse it here rather than fail in the driver.
    if isinstance(value, str):
        if "\x00" in value:
            return [
                {
                    "type": "value_error",
                    "loc": loc,
                    "msg": NUL_MESSAGE,
                    "input": value,
                    "ctx": {"error": {}},
                }
            ]
        return []
    errors: list[dict[str, Any]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            errors += _nul_errors(key, [*loc, str(key)])
            errors += _nul_errors(item, [*loc, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            errors += _nul_errors(item, [*loc, index])
    return errors


def _load(model: type[ModelT], data: Any, location: Location) -> ModelT:
    if nul := _nul_errors(data, [location]):
        raise RequestValidationError(nul)
    try:
        return model.model_validate(data, from_attributes=location == "body")
    except ValidationError as exc:
        raise RequestValidationError(validation_errors(exc, location)) from None


async def _read_bounded() -> bytes:
    """Read the whole body, refusing it once it passes ``MAX_JSON_BYTES``.

    The app-wide limit is the upload size; JSON and forms get the smaller one. It is
    checked on the declared ``Content-Length`` and on the bytes actually read, so a
    chunked body cannot pass it. The body is put back for ``request.form``.

    Raises:
        RequestEntityTooLarge: the body is larger than the limit.
        RequestTimeout: the body did not arrive within the request's body timeout.
    """
    limit: int = current_app.config["GENAI_MAX_JSON_BYTES"]
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RequestEntityTooLarge()
    received = bytearray()
    try:
        async with asyncio.timeout(request.body_timeout):
            async for chunk in request.body:
                received += chunk
                if len(received) > limit:
                    raise RequestEntityTooLarge()
    except TimeoutError:
        raise RequestTimeout() from None
    data = bytes(received)
    request.body = request.body_class(len(data), None)
    request.body.set_result(data)
    return data


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True
    main, _, sub = content_type.split(";", 1)[0].strip().lower().partition("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))


async def parse_json_body() -> Any:
    """Read the request body as JSON, the way the original does.

    An empty body is ``None``; a body whose Content-Type is not JSON stays text (the
    model then reports it); malformed JSON is a 422 ``json_invalid``.

    Raises:
        RequestValidationError: the body is not valid JSON.
    """
    raw = await _read_bounded()
    if not raw:
        return None
    if not _is_json(request.headers.get("Content-Type")):
        return raw.decode("utf-8", "replace")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        position, message = exc.pos, exc.msg
    except (ValueError, RecursionError) as exc:
        # Undecodable bytes, integers past the digit limit, absurd nesting.
        position, message = 0, str(exc) or type(exc).__name__
    raise RequestValidationError(
        [
            {
                "type": "json_invalid",
                "loc": ["body", position],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": message},
            }
        ]
    )


def validate_body(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the JSON body against ``model`` and pass it as ``data=``."""

    def decorator(func: F) -> F:
        setattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.JSON))

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            body = await parse_json_body()
            if body is None:
                raise RequestValidationError(
                    [{"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}]
                )
            return await func(*args, data=_load(model, body, "body"), **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def validate_form(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate a url-encoded or multipart form against ``model``; pass it as ``data=``."""

    def decorator(func: F) -> F:
        setattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.FORM))

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            await _read_bounded()
            form = await request.form
            data = {key: form.getlist(key)[-1] for key in form}
            try:
                loaded = _load(model, data, "body")
            except RequestValidationError as exc:
                # Form fields are validated one by one: a missing one has no input.
                for error in exc.errors:
                    if error["type"] == "missing":
                        error["input"] = None
                raise
            return await func(*args, data=loaded, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def documents_multipart(model: type[BaseModel]) -> Callable[[F], F]:
    """Document a ``multipart/form-data`` body that the route reads by itself.

    It only documents (``/openapi.json`` and the fuzzers see the body): the route
    reads and checks the form, e.g. to answer its own 413.
    """

    def decorator(func: F) -> F:
        setattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, (model, DataSource.FORM_MULTIPART))
        return func

    return decorator


def validate_query(model: type[BaseModel]) -> Callable[[F], F]:
    """Validate the query string against ``model`` and pass it as ``query=``.

    A repeated key keeps its last value.
    """

    def decorator(func: F) -> F:
        setattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, model)

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            data = {key: request.args.getlist(key)[-1] for key in request.args}
            return await func(*args, query=_load(model, data, "query"), **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


_UUID = TypeAdapter(UUID)


def validate_path(**types: Any) -> Callable[[F], F]:
    """Convert path parameters, e.g. ``@validate_path(agent_id=UUID)``.

    A value that does not convert gives a 422 at ``["path", <name>]`` (``uuid_parsing``
    for a malformed UUID), never a 404.
    """
    adapters = {name: _UUID if kind is UUID else TypeAdapter(kind) for name, kind in types.items()}

    def decorator(func: F) -> F:
        setattr(func, PATH_TYPES_ATTRIBUTE, dict(types))

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            errors: list[dict[str, Any]] = []
            for name, adapter in adapters.items():
                try:
                    kwargs[name] = adapter.validate_python(kwargs[name])
                except ValidationError as exc:
                    for error in validation_errors(exc, "path"):
                        error["loc"] = ["path", name, *error["loc"][1:]]
                        errors.append(error)
            if errors:
                raise RequestValidationError(errors)
            return await func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def responds(model: Any, status_code: int = 200) -> Callable[[F], F]:
    """Document that the route answers ``status_code`` with a body of ``model``.

    ``model=None`` documents an empty body (a 204). It only documents: routes build
    their responses with :func:`web.common.json_response`.
    """

    def decorator(func: F) -> F:
        if model is None:
            setattr(func, EMPTY_RESPONSE_ATTRIBUTE, status_code)
            return func
        schemas = dict(getattr(func, QUART_SCHEMA_RESPONSE_ATTRIBUTE, {}))
        schemas[status_code] = (model, None)
        setattr(func, QUART_SCHEMA_RESPONSE_ATTRIBUTE, schemas)
        return func

    return decorator
