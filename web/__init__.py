"""The HTTP face: the Quart app factory, its settings and its error types."""

from __future__ import annotations

from .app import create_app as create_app
from .errors import APIError as APIError
from .errors import RequestValidationError as RequestValidationError
from .services import AppServices as AppServices
from .services import services as services
from .settings import Settings as Settings

__all__ = [
    "APIError",
    "AppServices",
    "RequestValidationError",
    "Settings",
    "create_app",
    "services",
]
