"""Passwords, tokens and the three ways a request authenticates (U, U/A and S).

Routes declare their mode with a decorator that passes the resolved :class:`Caller`
as ``caller=``:

- :func:`requires_user` (U): a user token;
- :func:`requires_user_or_agent` (U/A): a user token, or an agent token acting as its creator;
- :func:`requires_service` (S): a user token, or ``?user_id=`` with ``X-API-KEY``.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import anyio.to_thread
import bcrypt
import jwt
from pydantic import TypeAdapter, ValidationError
from quart import current_app, request
from quart_schema.openapi import QUART_SCHEMA_SECURITY_ATTRIBUTE

from persistence import AgentRepository, UserRepository

from .common import read_session
from .errors import APIError, RequestValidationError, validation_errors
from .openapi import API_KEY_SCHEME, USER_SCHEME
from .services import services

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "AGENT_TOKEN_EXP",
    "Caller",
    "KnownUsers",
    "hash_password",
    "issue_agent_token",
    "issue_user_token",
    "read_token",
    "requires_service",
    "requires_user",
    "requires_user_or_agent",
    "verify_password",
]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

AGENT_TOKEN_EXP = 253402300799
"""``exp`` of every agent token: 9999-12-31T23:59:59Z, the largest a JWT library accepts."""

NOT_AUTHENTICATED = "Not authenticated"
INVALID_TOKEN = "Token is not valid or expired. Please log in again"
SERVICE_NOTHING = "You must provide either 'user_id' or your jwt token to continue."
SERVICE_BOTH = "You must provide either 'user_id' or your jwt token, but not both at the same time."
SERVICE_LOOKUP = "Lookup by user_id is not allowed for plain authenticated users."
SERVICE_BAD_TOKEN = "JWT token is invalid or expired"
SERVICE_NO_KEY = "You must provide x-api-key header if user_id query parameter is provided."
SERVICE_BAD_KEY = "Invalid x-api-key header"

_BCRYPT_MAX = 72


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts as: a user, possibly through one of their agents' tokens."""

    user_id: UUID
    agent_id: UUID | None = None


# -- passwords ---------------------------------------------------------------------------


def _secret(password: str) -> bytes:
    # bcrypt only ever looked at the first 72 bytes; newer releases raise past them.
    return password.encode("utf-8", "surrogatepass")[:_BCRYPT_MAX]


async def hash_password(password: str, rounds: int = 12) -> str:
    """Hash ``password`` with bcrypt in a worker thread.

    Waits for the thread; the event loop stays free.
    """
    hashed = await anyio.to_thread.run_sync(
        bcrypt.hashpw, _secret(password), bcrypt.gensalt(rounds)
    )
    return hashed.decode("ascii")


def _check(password: bytes, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False


async def verify_password(password: str, hashed: str) -> bool:
    """Tell whether ``password`` matches the bcrypt ``hashed``, in a worker thread."""
    return await anyio.to_thread.run_sync(_check, _secret(password), hashed.encode("ascii"))


_dummy_hashes: dict[int, str] = {}


async def dummy_hash(rounds: int) -> str:
    """Return a hash to verify against when a user is missing, so timing reveals nothing."""
    if rounds not in _dummy_hashes:
        _dummy_hashes[rounds] = await hash_password("not a password of anyone", rounds)
    return _dummy_hashes[rounds]


# -- tokens ------------------------------------------------------------------------------


def issue_user_token(user_id: UUID, settings: Settings) -> str:
    """Sign a user token: ``sub`` = the user id, ``exp`` = now (UTC) + the lifetime."""
    expires = datetime.now(UTC) + timedelta(seconds=settings.user_token_lifetime_seconds)
    return jwt.encode(
        {"sub": str(user_id), "exp": expires},
        settings.JWT_SECRET_KEY,
        algorithm=settings.HASH_ALGORITHM,
    )


def issue_agent_token(agent_id: UUID, user_id: UUID, settings: Settings) -> str:
    """Sign an agent token: ``sub`` = the agent id, ``user_id`` = its creator, no expiry."""
    return jwt.encode(
        {"sub": str(agent_id), "exp": AGENT_TOKEN_EXP, "user_id": str(user_id)},
        settings.JWT_SECRET_KEY,
        algorithm=settings.HASH_ALGORITHM,
    )


def read_token(token: str, settings: Settings) -> dict[str, Any] | None:
    """Return the claims of a token signed with our key, or None if it is bad or expired."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token, settings.JWT_SECRET_KEY, algorithms=[settings.HASH_ALGORITHM]
        )
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    return claims if isinstance(claims, dict) else None


def _as_uuid(value: Any) -> UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


class KnownUsers:
    """User ids recently found to exist, each remembered for ``ttl`` seconds.

    Every authenticated request must know that its token's user exists. The API never
    deletes a user, so a recent "yes" stays true; remembering it spares a database
    round trip per request. Only "yes" is remembered, and at most ``size`` of them
    (least recently confirmed forgotten first). Agent tokens are always checked, since
    deleting an agent must revoke its token at once.
    """

    def __init__(
        self, ttl: float = 30.0, size: int = 10_000, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._expiry: OrderedDict[UUID, float] = OrderedDict()

    def __contains__(self, user_id: UUID) -> bool:
        expiry = self._expiry.get(user_id)
        if expiry is None:
            return False
        if expiry < self._clock():
            del self._expiry[user_id]
            return False
        return True

    def add(self, user_id: UUID) -> None:
        """Remember that ``user_id`` exists, for the next ``ttl`` seconds."""
        self._expiry[user_id] = self._clock() + self._ttl
        self._expiry.move_to_end(user_id)
        if len(self._expiry) > self._size:
            self._expiry.popitem(last=False)


_KNOWN_USERS = "genai.known_users"


def _known_users() -> KnownUsers:
    known: KnownUsers | None = current_app.extensions.get(_KNOWN_USERS)
    if known is None:
        known = current_app.extensions[_KNOWN_USERS] = KnownUsers()
    return known


async def resolve_token(token: str, *, allow_agent: bool) -> Caller | None:
    """Find who ``token`` acts as: its user, or (if allowed) its agent's creator.

    An agent token counts only while its agent exists. Returns None when neither reading
    yields an existing user.
    """
    found = services()
    claims = read_token(token, found.settings)
    if claims is None:
        return None
    subject = _as_uuid(claims.get("sub"))
    if subject is None:
        return None
    known = _known_users()
    if subject in known:
        return Caller(subject)
    owner = _as_uuid(claims.get("user_id")) if allow_agent and "exp" in claims else None
    async with read_session() as session:
        if await UserRepository(session).exists(subject):
            known.add(subject)
            return Caller(subject)
        if owner is not None and await AgentRepository(session).exists(subject, owner_id=owner):
            return Caller(owner, subject)
    return None


def _bearer_token() -> str:
    header = request.headers.get("Authorization")
    scheme, _, token = (header or "").partition(" ")
    if not header or scheme.lower() != "bearer":
        raise APIError.unauthorized(NOT_AUTHENTICATED)
    return token


def _requires(allow_agent: bool) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        setattr(func, QUART_SCHEMA_SECURITY_ATTRIBUTE, [{USER_SCHEME: []}])

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller = await resolve_token(_bearer_token(), allow_agent=allow_agent)
            if caller is None:
                raise APIError.unauthorized(INVALID_TOKEN)
            return await func(*args, caller=caller, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


requires_user = _requires(allow_agent=False)
"""U: the request carries a user token; 401 otherwise."""

requires_user_or_agent = _requires(allow_agent=True)
"""U/A: the request carries a user token or a live agent token; 401 otherwise."""

_OPTIONAL_UUID = TypeAdapter(UUID)


def _query_user_id() -> UUID | None:
    values = request.args.getlist("user_id")
    if not values:
        return None
    try:
        return _OPTIONAL_UUID.validate_python(values[-1])
    except ValidationError as exc:
        errors = validation_errors(exc, "query")
        for error in errors:
            error["loc"] = ["query", "user_id"]
        raise RequestValidationError(errors) from None


def requires_service(func: F) -> F:
    """S: a user token, or ``?user_id=`` with ``X-API-KEY`` = ``MASTER_BE_API_KEY``.

    The first matching case of the contract's table decides (missing both, all three,
    token with user_id, token alone, user_id alone).
    """
    setattr(func, QUART_SCHEMA_SECURITY_ATTRIBUTE, [{USER_SCHEME: []}, {API_KEY_SCHEME: []}])

    @wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        user_id = _query_user_id()
        header = request.headers.get("Authorization")
        api_key = request.headers.get("X-API-KEY")
        if user_id is None and header is None:
            raise APIError(400, SERVICE_NOTHING)
        if header is not None and user_id is not None:
            raise APIError(400, SERVICE_BOTH if api_key is not None else SERVICE_LOOKUP)
        if header is not None:
            words = header.split()
            caller = await resolve_token(words[-1], allow_agent=True) if words else None
            if caller is None:
                raise APIError(400, SERVICE_BAD_TOKEN)
        else:
            assert user_id is not None
            if api_key is None:
                raise APIError(401, SERVICE_NO_KEY)
            given = api_key.encode()
            # Every key is compared, so the time taken does not tell which one is close.
            matches = [
                hmac.compare_digest(given, expected.encode())
                for expected in services().settings.master_api_keys()
            ]
            if not any(matches):
                raise APIError(401, SERVICE_BAD_KEY)
            caller = Caller(user_id)
        return await func(*args, caller=caller, **kwargs)

    return wrapper  # type: ignore[return-value]
