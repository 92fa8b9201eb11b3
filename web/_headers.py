"""Security headers on every answer of the HTTP face."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request

if TYPE_CHECKING:
    from quart import Quart

__all__ = ["NO_STORE_PREFIXES", "install_security_headers"]

NO_STORE_PREFIXES = ("/api", "/files", "/user", "/health", "/metrics")
"""Paths whose answers hold a user's or an operator's data: never kept by a cache."""


def install_security_headers(app: Quart) -> None:
    """Add the security headers to every response of ``app``, errors included.

    ``nosniff`` stops a browser from running an uploaded file served back as a
    download as script or style; ``DENY`` keeps the pages (the API docs) out of frames;
    ``no-store`` keeps tokens, keys and chats out of browser and proxy caches (a route
    that sets its own ``Cache-Control`` keeps it).
    """

    @app.after_request
    async def _secure(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith(NO_STORE_PREFIXES) and "Cache-Control" not in headers:
            headers["Cache-Control"] = "no-store"
        return response
