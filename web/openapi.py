"""The OpenAPI document: quart-schema's, plus UUID path parameters and error responses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from quart_schema import OpenAPIProvider
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)

from .validation import EMPTY_RESPONSE_ATTRIBUTE, PATH_TYPES_ATTRIBUTE

if TYPE_CHECKING:
    from werkzeug.routing import Rule

__all__ = ["ERROR_SCHEMAS", "SECURITY_SCHEMES", "GenAIOpenAPIProvider"]

USER_SCHEME = "OAuth2PasswordBearer"
API_KEY_SCHEME = "APIKeyHeader"

SECURITY_SCHEMES: dict[str, Any] = {
    USER_SCHEME: {
        "type": "oauth2",
        "flows": {"password": {"tokenUrl": "/api/login/access-token", "scopes": {}}},
    },
    API_KEY_SCHEME: {"type": "apiKey", "in_": "header", "name": "X-API-KEY"},
}

ERROR_SCHEMAS: dict[str, Any] = {
    "HTTPError": {
        "title": "HTTPError",
        "type": "object",
        "properties": {"detail": {"title": "Detail", "type": "string"}},
        "required": ["detail"],
    },
    "ValidationError": {
        "title": "ValidationError",
        "type": "object",
        "properties": {
            "type": {"title": "Error Type", "type": "string"},
            "loc": {
                "title": "Location",
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "msg": {"title": "Message", "type": "string"},
            "input": {"title": "Input"},
            "ctx": {"title": "Context", "type": "object"},
        },
        "required": ["type", "loc", "msg", "input"],
    },
    "HTTPValidationError": {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {
            "detail": {
                "title": "Detail",
                "type": "array",
                "items": {"$ref": "#/components/schemas/ValidationError"},
            }
        },
        "required": ["detail"],
    },
}


def _error_response(description: str, ref: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


class GenAIOpenAPIProvider(OpenAPIProvider):
    """Document UUID path parameters, 422s and the ``{"detail"}`` error body."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        document["components"]["schemas"].update(ERROR_SCHEMAS)
        document["paths"] = dict(document["paths"])
        return document

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        path_types: dict[str, Any] = getattr(func, PATH_TYPES_ATTRIBUTE, {})
        validates = bool(
            path_types
            or getattr(func, QUART_SCHEMA_REQUEST_ATTRIBUTE, None)
            or getattr(func, QUART_SCHEMA_QUERYSTRING_ATTRIBUTE, None)
        )
        for operations in paths.values():
            for method, operation in operations.items():
                operation = operations[method] = dict(operation)
                operation["parameters"] = [
                    _typed_parameter(parameter, path_types) for parameter in operation["parameters"]
                ]
                responses = operation["responses"] = dict(operation["responses"])
                if (empty := getattr(func, EMPTY_RESPONSE_ATTRIBUTE, None)) is not None:
                    responses[empty] = {"description": "No Content"}
                if operation.get("security"):
                    responses.setdefault(401, _error_response("Not authenticated", "HTTPError"))
                responses.setdefault(400, _error_response("Bad request", "HTTPError"))
                if validates:
                    responses.setdefault(
                        422, _error_response("Validation error", "HTTPValidationError")
                    )
        return paths, components


def _typed_parameter(parameter: dict[str, Any], path_types: dict[str, Any]) -> dict[str, Any]:
    if parameter.get("in") == "path" and path_types.get(parameter["name"]) is UUID:
        return {**parameter, "schema": {"type": "string", "format": "uuid"}}
    return parameter
