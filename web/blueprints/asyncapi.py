"""The event schema of the two WebSockets: ``GET /asyncapi.json`` (AsyncAPI 3.0) and
``GET /asyncapi``, the same rendered as a page (no script, nothing from a CDN)."""

from __future__ import annotations

import functools
import json

from quart import Blueprint, Response
from quart_schema import hide

from ..asyncapi import asyncapi_document, render_page

__all__ = ["blueprint"]

blueprint = Blueprint("asyncapi", __name__)

# The page runs nothing and loads nothing: only its own inline style is allowed.
_PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


@functools.cache
def _bodies() -> tuple[bytes, bytes]:
    # The document is fixed for the process: render it once.
    document = asyncapi_document()
    return json.dumps(document).encode(), render_page(document).encode()


@blueprint.get("/asyncapi.json")
@hide
async def asyncapi_json() -> Response:
    """Return the AsyncAPI 3.0 document of ``/frontend/ws`` and the router's ``/ws``."""
    return Response(_bodies()[0], content_type="application/json")


@blueprint.get("/asyncapi")
@hide
async def asyncapi_page() -> Response:
    """Return the document as a readable HTML page."""
    return Response(
        _bodies()[1],
        content_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": _PAGE_POLICY},
    )
