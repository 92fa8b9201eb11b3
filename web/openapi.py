"""The OpenAPI document: quart-schema's, plus UUID path parameters and error responses.

Also the documentation pages' assets: quart-schema's ``/docs`` (Swagger UI) and
``/redoc`` pages load their scripts from CDNs by default (ReDoc from an unpinned
``@next``), which leaves them blank without Internet. We serve the pinned copies that
the ``openapi-ui-bundles`` package ships instead, under our own routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

import openapi_ui_bundles
from quart import Quart, Response, send_from_directory
from quart_schema import OpenAPIProvider, hide
from quart_schema.validation import (
    QUART_SCHEMA_QUERYSTRING_ATTRIBUTE,
    QUART_SCHEMA_REQUEST_ATTRIBUTE,
)

from .validation import EMPTY_RESPONSE_ATTRIBUTE, PATH_TYPES_ATTRIBUTE

if TYPE_CHECKING:
    from werkzeug.routing import Rule

__all__ = [
    "DOCS_ASSETS_PATH",
    "ERROR_SCHEMAS",
    "SECURITY_SCHEMES",
    "GenAIOpenAPIProvider",
    "install_docs_assets",
]

DOCS_ASSETS_PATH = "/docs/assets"
_BUNDLES = {
    "swagger-ui": openapi_ui_bundles.swagger_ui.static_path,
    "redoc": openapi_ui_bundles.redoc.static_path,
}
# The bundle's version is pinned in pyproject.toml, so a browser may keep its files.
_ASSET_MAX_AGE_SECONDS = 24 * 3600

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


def install_docs_assets(app: Quart) -> None:
    """Serve the documentation pages' scripts and styles from this process.

    Call before ``QuartSchema(app)``: it keeps URLs already in the config and only fills
    in its CDN defaults for the missing ones.
    """
    app.config["QUART_SCHEMA_SWAGGER_JS_URL"] = (
        f"{DOCS_ASSETS_PATH}/swagger-ui/swagger-ui-bundle.js"
    )
    app.config["QUART_SCHEMA_SWAGGER_CSS_URL"] = f"{DOCS_ASSETS_PATH}/swagger-ui/swagger-ui.css"
    app.config["QUART_SCHEMA_REDOC_JS_URL"] = f"{DOCS_ASSETS_PATH}/redoc/redoc.standalone.js"
    app.add_url_rule(
        f"{DOCS_ASSETS_PATH}/<any({', '.join(map(repr, _BUNDLES))}):bundle>/<path:name>",
        "docs_asset",
        _docs_asset,
        methods=["GET"],
    )


@hide
async def _docs_asset(bundle: str, name: str) -> Response:
    # send_from_directory refuses names that leave the directory (404).
    response = await send_from_directory(_BUNDLES[bundle], name)
    response.cache_control.public = True
    response.cache_control.max_age = _ASSET_MAX_AGE_SECONDS
    return response
