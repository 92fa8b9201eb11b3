"""The HTTP face: the Quart app factory, its settings and its error types.

The names are loaded on first use (PEP 562), so that importing a light module of the
package, such as ``web.cli`` for ``genai-backend --help``, does not import the whole app.
The ``services`` accessor is not among them: loading the ``web.services`` module binds
that name to the module, so it is imported from there.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app as create_app
    from .errors import APIError as APIError
    from .errors import RequestValidationError as RequestValidationError
    from .services import AppServices as AppServices
    from .settings import Settings as Settings

__all__ = [
    "APIError",
    "AppServices",
    "RequestValidationError",
    "Settings",
    "create_app",
]

_HOMES = {
    "APIError": ".errors",
    "AppServices": ".services",
    "RequestValidationError": ".errors",
    "Settings": ".settings",
    "create_app": ".app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
