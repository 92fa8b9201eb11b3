"""CORS on every response, errors included, and answers to preflight requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response, request

if TYPE_CHECKING:
    from collections.abc import Sequence

    from quart import Quart

__all__ = ["ALLOW_METHODS", "install_cors"]

ALLOW_METHODS = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"
MAX_AGE = "600"


class _Policy:
    def __init__(self, origins: Sequence[str]) -> None:
        self.allow_all = "*" in origins
        self.origins = frozenset(origins)

    def allows(self, origin: str) -> bool:
        # "null" is the origin of sandboxed frames, data: URLs and files: any page can
        # take it, so allowing it with credentials would allow every page.
        if origin == "null":
            return False
        return self.allow_all or origin in self.origins


def install_cors(app: Quart, origins: Sequence[str]) -> None:
    """Answer preflights and add CORS headers to every response of ``app``.

    Credentials, all methods and all headers are allowed. A preflight echoes the Origin;
    a simple request gets ``*`` when every origin is allowed, else its own Origin. The
    origin ``null`` is never allowed, even when every origin is.
    """
    policy = _Policy(origins)

    @app.before_request
    async def _preflight() -> Response | None:
        if request.method != "OPTIONS":
            return None
        origin = request.headers.get("Origin")
        wanted = request.headers.get("Access-Control-Request-Method")
        if origin is None or wanted is None:
            return None
        headers = {
            "Access-Control-Allow-Methods": ALLOW_METHODS,
            "Access-Control-Max-Age": MAX_AGE,
            "Access-Control-Allow-Credentials": "true",
            "Vary": "Origin",
        }
        if requested := request.headers.get("Access-Control-Request-Headers"):
            headers["Access-Control-Allow-Headers"] = requested
        if not policy.allows(origin):
            return Response("Disallowed CORS origin", 400, headers, content_type="text/plain")
        headers["Access-Control-Allow-Origin"] = origin
        return Response("OK", 200, headers, content_type="text/plain; charset=utf-8")

    @app.after_request
    async def _simple(response: Response) -> Response:
        origin = request.headers.get("Origin")
        if origin is None or "Access-Control-Allow-Origin" in response.headers:
            return response
        if origin == "null":
            return response
        if policy.allow_all:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in policy.origins:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers.add("Vary", "Origin")
        else:
            return response
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response
