"""What the app is given when it is created, and how routes reach it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import current_app

from ._sockets import SocketCounts
from .metrics import Metrics

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from .settings import Settings

__all__ = ["EXTENSION_KEY", "AppServices", "services"]

EXTENSION_KEY = "genai"


@dataclass(slots=True)
class AppServices:
    """The collaborators of one app: settings, the database, and the actor clients.

    The live path plugs its clients in here (``chats``, ``router``); routes read them with
    :func:`services`. ``extras`` holds anything else a later part needs to hand to routes.
    """

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    chats: Any = None
    router: Any = None
    metrics: Metrics = field(default_factory=Metrics)
    extras: dict[str, Any] = field(default_factory=dict)
    sockets: SocketCounts = field(default_factory=SocketCounts)
    """The open front-end sockets per user (``MAX_SOCKETS_PER_USER``)."""


def services() -> AppServices:
    """Return the services of the app handling the current request."""
    found: AppServices = current_app.extensions[EXTENSION_KEY]
    return found
