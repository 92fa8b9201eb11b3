"""The application factory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Quart, Response
from quart.sessions import NullSession, SecureCookieSessionInterface
from quart_schema import Info, QuartSchema, hide

from ._headers import install_security_headers
from .blueprints import BLUEPRINTS
from .cors import install_cors
from .errors import register_error_handlers
from .metrics import install_metrics
from .openapi import SECURITY_SCHEMES, GenAIOpenAPIProvider, install_docs_assets
from .services import EXTENSION_KEY, AppServices

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from .settings import Settings

__all__ = ["create_app"]


class _SessionInterface(SecureCookieSessionInterface):
    """Quart's cookie sessions, with one null session shared by every request.

    The app sets no secret key, so every request and socket gets a null session, which
    refuses every change; each open socket would otherwise keep one of its own (0.6 KB).
    """

    _null = NullSession()

    async def make_null_session(self, app: Quart) -> NullSession:
        return self._null


def create_app(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    services: AppServices | None = None,
) -> Quart:
    """Build the HTTP app: documentation, blueprints, error handlers and CORS.

    Args:
        settings: the process settings.
        sessionmaker: opens one database session per unit of work.
        services: the collaborators handed to routes (actor clients...); by default only
            ``settings`` and ``sessionmaker``.

    Returns:
        A Quart app, not yet serving.
    """
    app = Quart("genai_backend")
    app.session_interface = _SessionInterface()
    # Serve "/api/agents" and "/api/agents/" alike, with no redirect to lose headers on.
    app.url_map.strict_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.MAX_UPLOAD_BYTES
    app.config["GENAI_MAX_JSON_BYTES"] = settings.MAX_JSON_BYTES
    app.config["GENAI_MAX_JSON_DEPTH"] = settings.MAX_JSON_DEPTH
    app.config["MAX_FORM_PARTS"] = settings.MAX_FORM_FIELDS
    services = services or AppServices(settings, sessionmaker)
    app.extensions[EXTENSION_KEY] = services

    install_docs_assets(app)
    QuartSchema(
        app,
        info=Info(
            title="GenAI AgentOS back-end",
            version="0.1.0",
            description=(
                "The WebSockets (`/frontend/ws` and the router's) and their frames: "
                "[/asyncapi](/asyncapi) ([AsyncAPI 3 document](/asyncapi.json))."
            ),
        ),
        redoc_ui_path="/redoc",
        scalar_ui_path=None,
        security_schemes=SECURITY_SCHEMES,
        openapi_provider_class=GenAIOpenAPIProvider,
    )
    app.add_url_rule("/", "root", _root, methods=["GET"])
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    register_error_handlers(app)
    install_metrics(app, services.metrics)
    install_cors(app, settings.BACKEND_CORS_ORIGINS)
    install_security_headers(app)
    return app


@hide
async def _root() -> Response:
    return Response(b"", status=307, headers={"Location": "/docs"})
