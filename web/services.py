"""What the app is given when it is created, and how routes reach it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from quart import current_app

from persistence import CatalogueVersions

from ._sockets import SocketCounts
from ._throttle import LoginThrottle, ThrottleLimits
from .metrics import Metrics

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from actors.chat import ChatDrain
    from persistence import ApiKeyCipher
    from runtime import ActorSystem

    from .settings import Settings

__all__ = ["EXTENSION_KEY", "AppServices", "RouterStatus", "services"]

RouterStatus = Callable[[], Awaitable[dict[str, Any]]]
"""Reports the router session: ``{"connected": bool, ...}``."""

EXTENSION_KEY = "genai"


@dataclass(slots=True)
class AppServices:
    """The collaborators of one app: settings, the database, and the actor clients.

    The server plugs the running parts in here; routes read them with :func:`services`.
    An app without them (as in most tests) answers readiness with 503.
    """

    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    chats: Any = None
    router: Any = None
    metrics: Metrics = field(default_factory=Metrics)
    sockets: SocketCounts = field(default_factory=SocketCounts)
    """The open front-end sockets per user (``MAX_SOCKETS_PER_USER``)."""
    system: ActorSystem | None = None
    """The running supervision tree (health, readiness, metrics)."""
    router_status: RouterStatus | None = None
    registry_status: RouterStatus | None = None
    """The registry's work waiting for the database (shown in ``/health``)."""
    drain: ChatDrain | None = None
    """The server's stop: once it has begun, readiness is 503 and new sockets are refused."""
    cipher: ApiKeyCipher | None = None
    catalogue: CatalogueVersions = field(default_factory=CatalogueVersions)
    """Users' catalogue versions; the list routes cache their answers only while live."""
    throttle: LoginThrottle | None = None
    """Failed logins per username and address; made from the settings on first use."""
    process_id: uuid.UUID = field(default_factory=uuid.uuid4)
    """This server process: written on the chat turns it runs."""
    cluster: Any = None
    """The heartbeat's client (``actors.cluster.HeartbeatClient``): this process and its
    peers on the same database, shown in ``/health``."""

    def api_key_cipher(self) -> ApiKeyCipher:
        """Return the provider API-key cipher, built from the settings on first use.

        Raises:
            ValueError: ``ENCRYPTION_KEYS`` is malformed or empty.
        """
        if self.cipher is None:
            self.cipher = self.settings.api_key_cipher()
        return self.cipher

    def login_throttle(self) -> LoginThrottle:
        """Return the login throttle, built from the settings on first use."""
        if self.throttle is None:
            settings = self.settings
            self.throttle = LoginThrottle(
                ThrottleLimits(
                    per_user=settings.LOGIN_FAILURES_PER_USER,
                    per_address=settings.LOGIN_FAILURES_PER_ADDRESS,
                    window=settings.LOGIN_FAILURE_WINDOW_SECONDS,
                )
            )
        return self.throttle


def services() -> AppServices:
    """Return the services of the app handling the current request."""
    found: AppServices = current_app.extensions[EXTENSION_KEY]
    return found
