"""Who is on the other end of a socket, read from its handshake headers.

The headers are checked in this order, the first one present wins (PROTOCOL.md §1.2):

- ``API-KEY``: the exact back-end or master-agent key gives ``master_server_be`` or
  ``master_server_ml``; an unknown key gives no identity.
- ``X-Custom-Authorization``: a raw agent JWT. Its ``sub`` claim is read **without**
  checking the signature, as upstream does: the back-end validates the token when the
  agent registers. A value that is not a JWT is itself the client id.
- ``x-custom-invoke-key``: ``"<caller id>:<target id>"``, the short-lived socket that a
  library ``send()`` opens; the value is the client id.

A router given an :data:`AgentVerifier` (the embedded one: it checks the signature and
that the agent exists) trusts none of these claims by themselves: an agent socket is
routable only once its token is verified, and a ``send()`` socket only if its caller is
a master key or an agent connected with a verified token (see ``RoutingTable``).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias

__all__ = [
    "DEFAULT_MASTER_AGENT_API_KEY",
    "DEFAULT_MASTER_BE_API_KEY",
    "MASTER_SERVER_BE",
    "MASTER_SERVER_ML",
    "AgentVerifier",
    "ApiKeys",
    "ClientKind",
    "Identity",
    "VerifiedAgent",
    "identify",
]

MASTER_SERVER_BE = "master_server_be"
MASTER_SERVER_ML = "master_server_ml"
_RESERVED = frozenset({MASTER_SERVER_BE, MASTER_SERVER_ML})
DEFAULT_MASTER_AGENT_API_KEY = "e1adc3d8-fca1-40b2-b90a-7b48290f2d6a::master_server_ml"
DEFAULT_MASTER_BE_API_KEY = "7a3fd399-3e48-46a0-ab7c-0eaf38020283::master_server_be"


class ClientKind(enum.Enum):
    """The kind of client a socket belongs to."""

    BACKEND = "backend"
    """The back-end's event connection (``API-KEY``), client id ``master_server_be``."""
    MASTER = "master"
    """The master agent's main connection (``API-KEY``), client id ``master_server_ml``."""
    AGENT = "agent"
    """An agent's main connection (``X-Custom-Authorization``)."""
    INVOKE = "invoke"
    """A short-lived ``send()`` connection (``x-custom-invoke-key``)."""


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKeys:
    """The two API keys the router maps to the master client ids."""

    master_be: str = DEFAULT_MASTER_BE_API_KEY
    master_agent: str = DEFAULT_MASTER_AGENT_API_KEY


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """The client id of a socket, its kind, and the agent JWT it connected with."""

    client_id: str
    kind: ClientKind
    agent_jwt: str | None = None
    owner: str | None = None
    """The user owning the agent (or the calling agent of a ``send()`` socket), once
    verified; ``None`` for the masters and on a router that verifies nothing."""

    def may_invoke_master(self, keys: ApiKeys) -> bool:
        """Say whether this client may invoke ``master_server_ml`` (the back-end only)."""
        return self.kind is ClientKind.BACKEND or self.client_id.startswith(keys.master_be)

    def holds_master_key(self, keys: ApiKeys) -> bool:
        """Say whether this client connected with one of the two API keys: the back-end,
        the master agent, or a ``send()`` socket of theirs. They act for every user."""
        if self.kind in (ClientKind.BACKEND, ClientKind.MASTER):
            return True
        return self.kind is ClientKind.INVOKE and (
            self.client_id.startswith(f"{keys.master_be}:")
            or self.client_id.startswith(f"{keys.master_agent}:")
        )


@dataclasses.dataclass(frozen=True, slots=True)
class VerifiedAgent:
    """What an :data:`AgentVerifier` vouches for: the agent and the user who owns it."""

    agent_id: str
    owner_id: str


AgentVerifier: TypeAlias = Callable[[list[str]], Awaitable[Sequence[VerifiedAgent | None]]]
"""Check agent JWTs (signature, agent exists and is not deleted), many at once: for each
token, in order, what it proves, or ``None`` if it is not valid. The embedded router
gets one from the composition root, which owns the secret and the database."""


def identify(get_header: Callable[[str], str | None], keys: ApiKeys) -> Identity | None:
    """Find the identity of a socket from its handshake headers.

    Args:
        get_header: Looks a header up by name, case-insensitively; ``None`` if absent.
        keys: The API keys of the back-end and the master agent.

    Returns:
        The identity, or ``None`` if the headers carry none, or claim a master id
        without its API key (the socket is then closed with code 4000).
    """
    if (api_key := get_header("api-key")) is not None:
        if api_key == keys.master_be:
            return Identity(MASTER_SERVER_BE, ClientKind.BACKEND)
        if api_key == keys.master_agent:
            return Identity(MASTER_SERVER_ML, ClientKind.MASTER)
        return None
    if (token := get_header("x-custom-authorization")) is not None:
        identity = Identity(_agent_id(token), ClientKind.AGENT, agent_jwt=token)
    elif (invoke_key := get_header("x-custom-invoke-key")) is not None:
        identity = Identity(invoke_key, ClientKind.INVOKE)
    else:
        return None
    # Only the API keys give the master ids: a token claiming one would receive
    # every event meant for the back-end.
    return None if identity.client_id in _RESERVED else identity


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _agent_id(token: str) -> str:
    # Read, not checked (the verifier checks it): the payload's ``sub``, decoded here
    # rather than by PyJWT, whose unverified decode costs as much as a checked one.
    parts = token.split(".")
    if len(parts) != 3 or not all(_SEGMENT.fullmatch(part) for part in parts[:2]):
        return token
    try:
        header, claims = (
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in parts[:2]
        )
    except (ValueError, RecursionError):  # not base64, not UTF-8, not JSON, too deep
        return token
    sub = claims.get("sub") if isinstance(header, dict) and isinstance(claims, dict) else None
    return sub if isinstance(sub, str) and sub else token
