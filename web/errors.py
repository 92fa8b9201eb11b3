"""Errors the HTTP API answers with, and the handlers that render them.

Class tree::

    Exception
    ├── APIError                  a client-visible failure: {"detail": "<text>"}
    └── RequestValidationError    a request that fails validation: 422 {"detail": [error, ...]}

Werkzeug's ``HTTPException`` (404, 405, 413, ...) is rendered as ``{"detail": "<name>"}``;
anything else becomes a 500 ``{"detail": "Internal Server Error"}`` and is logged.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python
from quart import Response
from quart_schema import RequestSchemaValidationError
from quart_schema.validation import QuerystringValidationError, RequestHeadersValidationError
from werkzeug.exceptions import HTTPException

from persistence import is_database_unavailable

if TYPE_CHECKING:
    from quart import Quart

__all__ = [
    "APIError",
    "ErrorBody",
    "Location",
    "RequestValidationError",
    "ValidationErrorBody",
    "json_error",
    "register_error_handlers",
    "validation_errors",
]

Location = Literal["body", "query", "path", "header"]

logger = logging.getLogger(__name__)

_BEARER = {"WWW-Authenticate": "Bearer"}


class APIError(Exception):
    """Raised by a route to answer ``{"detail": detail}`` with ``status_code``."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail
        self.headers: dict[str, str] = dict(headers or {})

    @classmethod
    def unauthorized(cls, detail: str) -> APIError:
        """Build a 401 carrying ``WWW-Authenticate: Bearer``."""
        return cls(401, detail, headers=_BEARER)


class RequestValidationError(Exception):
    """Raised when a request's body, query, path or headers fail validation (422)."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(errors)
        self.errors: list[dict[str, Any]] = [dict(error) for error in errors]


# Documentation models for the error bodies (rendered in /openapi.json).
class ErrorBody(BaseModel):
    """``{"detail": "<text>"}``."""

    detail: str


class ValidationErrorItem(BaseModel):
    """One pydantic-v2 error, without ``url``."""

    type: str
    loc: list[str | int]
    msg: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationErrorBody(BaseModel):
    """``{"detail": [error, ...]}`` of a 422."""

    detail: list[ValidationErrorItem]


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return to_jsonable_python(value, fallback=str)


def _ctx(ctx: Mapping[str, Any]) -> dict[str, Any]:
    # An exception in ctx serialises to {} (the original's encoder does the same).
    return {
        key: {} if isinstance(value, BaseException) else _jsonable(value)
        for key, value in ctx.items()
    }


def format_error(error: Mapping[str, Any], prefix: Sequence[str | int] = ()) -> dict[str, Any]:
    """Render one pydantic error as the contract's error object."""
    out: dict[str, Any] = {
        "type": error["type"],
        "loc": [*prefix, *error.get("loc", ())],
        "msg": error["msg"],
        "input": _jsonable(error.get("input")),
    }
    if error.get("ctx") is not None:
        out["ctx"] = _ctx(error["ctx"])
    return out


def validation_errors(exc: ValidationError, location: Location) -> list[dict[str, Any]]:
    """Render a pydantic ``ValidationError`` with ``loc`` starting at ``location``."""
    errors = [format_error(error, (location,)) for error in exc.errors(include_url=False)]
    if location in {"query", "header"}:
        # Parameters are validated one by one: a missing one has no input.
        for error in errors:
            if error["type"] == "missing":
                error["input"] = None
    return errors


def json_error(status_code: int, detail: Any, headers: Mapping[str, str] | None = None) -> Response:
    """Build a JSON error response ``{"detail": detail}``."""
    text = json.dumps({"detail": detail}, ensure_ascii=False, separators=(",", ":"))
    # A detail that echoes a client's lone surrogate has no UTF-8 form: replace it
    # rather than fail while answering.
    body = text.encode("utf-8", "replace")
    response = Response(body, status=status_code, content_type="application/json")
    if headers:
        response.headers.update(headers)
    return response


async def _api_error(error: APIError) -> Response:
    return json_error(error.status_code, error.detail, error.headers)


async def _validation_error(error: RequestValidationError) -> Response:
    return json_error(422, error.errors)


async def _schema_validation_error(error: RequestSchemaValidationError) -> Response:
    # Routes validate with web.validation; this catches quart-schema's own decorators.
    location: Location = "body"
    if isinstance(error, QuerystringValidationError):
        location = "query"
    elif isinstance(error, RequestHeadersValidationError):
        location = "header"
    cause = error.validation_error
    if isinstance(cause, ValidationError):
        return json_error(422, validation_errors(cause, location))
    return json_error(422, [{"type": "value_error", "loc": [location], "msg": str(cause)}])


async def _http_exception(error: HTTPException) -> Response:
    response = json_error(error.code or 500, error.name)
    if error.code == 405 and (allow := getattr(error, "valid_methods", None)):
        response.headers["Allow"] = ", ".join(sorted(allow))
    return response


DATABASE_UNAVAILABLE = "Database unavailable. Try again later"


async def _unexpected(error: Exception) -> Response:
    if is_database_unavailable(error):
        # The server's condition, not the request's fault, and it passes: say so.
        logger.warning("database unavailable during a request: %r", error)
        return json_error(503, DATABASE_UNAVAILABLE, {"Retry-After": "5"})
    logger.error("unhandled error in a request", exc_info=error)
    return json_error(500, "Internal Server Error")


def register_error_handlers(app: Quart) -> None:
    """Install one handler per error family on ``app``."""
    app.register_error_handler(APIError, _api_error)
    app.register_error_handler(RequestValidationError, _validation_error)
    app.register_error_handler(RequestSchemaValidationError, _schema_validation_error)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)
