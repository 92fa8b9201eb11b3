"""Request validation that answers the contract's exact 422 bodies.

quart-schema's decorators raise a 400 and lose where the error came from; these
decorators validate with pydantic, prefix every ``loc`` with ``body``, ``query``,
``path`` or ``header`` and raise :class:`~web.errors.RequestValidationError`. They also
set quart-schema's attributes, so the routes stay documented in ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
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
    "DEFAULT_MAX_JSON_DEPTH",
    "EMPTY_RESPONSE_ATTRIBUTE",
    "NUL_MESSAGE",
    "PATH_TYPES_ATTRIBUTE",
    "documents_multipart",
    "hostile_errors",
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
DEFAULT_MAX_JSON_DEPTH = 64

_JSON_SUBTYPES = ("json",)


SURROGATE_MESSAGE = "Input should be a valid string, unable to parse raw data as a unicode string"
NON_FINITE_MESSAGE = "Input should be a finite number"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _string_errors(text: str, loc: list[str | int]) -> list[dict[str, Any]]:
    # PostgreSQL text cannot hold U+0000, and a lone surrogate has no UTF-8 form (the
    # driver and the response encoder would both fail): refuse them here, as a client
    # error, before they reach either.
    if "\x00" in text:
        return [
            {
                "type": "value_error",
                "loc": loc,
                "msg": NUL_MESSAGE,
                "input": text.encode("utf-8", "replace").decode("utf-8"),
                "ctx": {"error": {}},
            }
        ]
    if _has_surrogate(text):
        return [
            {
                "type": "string_unicode",
                "loc": loc,
                "msg": SURROGATE_MESSAGE,
                "input": text.encode("utf-8", "replace").decode("utf-8"),
            }
        ]
    return []


def hostile_errors(value: Any, loc: list[str | int], *, max_depth: int) -> list[dict[str, Any]]:
    """Return the errors of what no part of the server can hold, anywhere in ``value``.

    NUL characters and lone surrogates in strings and keys, non-finite numbers (``NaN``,
    ``Infinity``, ``1e999``) and nesting deeper than ``max_depth`` are refused wherever
    they appear, whatever the model says of the field: the database, the JSON encoder or
    the serialiser of a later answer would fail on them. The walk is iterative, so a
    deep value costs no recursion.

    Args:
        value: parsed JSON (or form and query values).
        loc: where ``value`` sits, e.g. ``["body"]``.
        max_depth: the most levels of arrays and objects allowed.

    Returns:
        The contract's error objects (empty when ``value`` is acceptable).
    """
    errors: list[dict[str, Any]] = []
    stack: list[tuple[Any, list[str | int], int]] = [(value, loc, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            errors += _string_errors(item, where)
        elif isinstance(item, float) and not math.isfinite(item):
            errors.append(
                {
                    "type": "finite_number",
                    "loc": where,
                    "msg": NON_FINITE_MESSAGE,
                    "input": str(item),
                }
            )
        elif isinstance(item, Mapping | list):
            if depth >= max_depth:
                errors.append(_too_deep(where, max_depth))
                continue
            pairs = item.items() if isinstance(item, Mapping) else enumerate(item)
            for key, child in pairs:
                if isinstance(key, str):
                    errors += _string_errors(key, [*where, key])
                stack.append((child, [*where, key], depth + 1))
    return errors


def _too_deep(loc: list[str | int], max_depth: int) -> dict[str, Any]:
    return {
        "type": "json_invalid",
        "loc": loc,
        "msg": "JSON decode error",
        "input": {},
        "ctx": {"error": f"nested deeper than {max_depth} levels"},
    }


def _max_depth() -> int:
    depth: int = current_app.config.get("GENAI_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH)
    return depth


def _load(model: type[ModelT], data: Any, location: Location) -> ModelT:
    if hostile := hostile_errors(data, [location], max_depth=_max_depth()):
        raise RequestValidationError(hostile)
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
            raw = await _read_bounded()
            # Count before parsing: a form of 100,000 empty fields costs nearly a second
            # of the event loop to parse (multipart forms are bounded by MAX_FORM_PARTS).
            if raw.count(b"&") >= current_app.config["MAX_FORM_PARTS"]:
                raise RequestEntityTooLarge()
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
