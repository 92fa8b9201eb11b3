"""The registry's pure rules: agent names and aliases, agent JWTs, and log validation.

Name rule (ENDPOINTS.md §3): spaces become ``_`` and the name is lowercased; at most
55 characters. Alias rule (API.md §13.8): strip the last ``_xxxxxx`` segment of the
current alias; if the rest equals the new name, keep the alias, else make a new one,
``<name>_<6 random lowercase letters>``.

Two decisions where upstream misbehaves:

- Upstream compares the alias with the *raw* ``agent_name`` and builds the new alias
  from it (``MyAgent_pfpusk``). We use the normalised name for both, so an alias is
  always a valid tool name for the master agent and does not change on every
  reconnect of an agent whose name has capitals or spaces.
- A name over 55 characters makes upstream's whole update fail, so the connected
  agent stays inactive and invisible. We keep its stored name and alias, store the
  rest (description, input schema) and mark it active, logging a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import uuid
from typing import Any

import jwt

from persistence import (
    MAX_NAME_LENGTH,
    NewLog,
    alias_matches,
    new_alias,
    normalise_name,
    utcnow,
)

from ._redact import redact

__all__ = [
    "MAX_NAME_LENGTH",
    "AgentClaims",
    "decode_agent_jwt",
    "is_agent_id",
    "new_alias",
    "next_alias",
    "normalise_name",
    "validate_log",
]


def next_alias(current: str, name: str) -> str | None:
    """Return None to keep ``current`` (it was made from ``name``), else a new alias."""
    return None if alias_matches(current, name) else new_alias(name)


def is_agent_id(client_id: str) -> bool:
    """Whether a router client id is an agent UUID (not a master or temporary id)."""
    try:
        uuid.UUID(client_id)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class AgentClaims:
    """The claims of a valid agent JWT."""

    agent_id: uuid.UUID
    user_id: uuid.UUID


_VALID_TOKENS_KEPT = 20_000
"""Valid agent tokens remembered with their expiry: an agent storm is this many agents."""
_valid_tokens: dict[tuple[str, str, str], tuple[AgentClaims, float]] = {}


def decode_agent_jwt(
    token: str | None, secret: str, algorithm: str = "HS256"
) -> AgentClaims | None:
    """Return the claims of a valid agent token, or None.

    Valid means: signed with ``secret``, not expired, with ``sub``, ``exp`` and
    ``user_id``, both ids UUIDs (API.md §9.4).

    A token found valid is remembered with its expiry (the last `_VALID_TOKENS_KEPT`),
    so that the router's check and the registry's, and every reconnect, check its
    signature once: PyJWT takes about 0.1 ms a token, as much as the rest of a
    registration. Only the expiry can make a valid token invalid later.
    """
    if not token:
        return None
    key = (token, secret, algorithm)
    if (known := _valid_tokens.get(key)) is not None:
        claims, expires = known
        if time.time() < expires:
            return claims
        del _valid_tokens[key]
    try:
        payload = jwt.decode(
            token, secret, algorithms=[algorithm], options={"require": ["sub", "exp", "user_id"]}
        )
        claims = AgentClaims(uuid.UUID(str(payload["sub"])), uuid.UUID(str(payload["user_id"])))
        expires = float(payload["exp"])
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError, OverflowError):
        return None
    if len(_valid_tokens) >= _VALID_TOKENS_KEPT:
        del _valid_tokens[next(iter(_valid_tokens))]  # the oldest
    _valid_tokens[key] = (claims, expires)
    return claims


@functools.lru_cache(maxsize=4096)
def _parse_uuid(value: str) -> uuid.UUID:
    # A request's logs repeat the same two ids; parsing them once saves a third of
    # the per-log cost.
    return uuid.UUID(value)


def validate_log(
    agent_id: str, session_id: Any, request_id: Any, log_level: Any, message: Any
) -> NewLog | None:
    """Return the log to store, or None to drop it.

    Stored only when ``session_id``, ``request_id`` and ``log_level`` are non-empty,
    the ids are UUIDs and there is a message (API.md §9.6). Secrets in the message are
    masked (`redact`); NUL characters, which PostgreSQL text refuses, become U+FFFD.
    """
    if not session_id or not request_id or not log_level or message is None:
        return None
    try:
        sid = _parse_uuid(str(session_id))
        rid = _parse_uuid(str(request_id))
    except ValueError:
        return None
    text = redact(message if isinstance(message, str) else str(message))
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    level = str(log_level)
    if "\x00" in level:
        level = level.replace("\x00", "\ufffd")
    # Stamped when accepted: a log held through an outage keeps the time it was sent,
    # and every attempt to write it carries the same stamp.
    return NewLog(sid, rid, agent_id, text, level, created_at=utcnow())
