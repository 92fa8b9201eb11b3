"""Registration, login and token validation."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, field_validator
from quart import Blueprint, request
from quart_schema import tag_blueprint

from persistence import AlreadyExistsError, UserRepository

from ..auth import (
    dummy_hash,
    hash_password,
    issue_user_token,
    resolve_token,
    verify_password,
)
from ..common import Timestamp, json_response, read_session
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_body, validate_form

__all__ = ["blueprint"]

blueprint = Blueprint("users", __name__)

TOO_MANY_ATTEMPTS = "Too many failed login attempts. Try again later"
tag_blueprint(blueprint, ["users"])


def check_password_policy(password: str) -> str:
    """Apply the password policy; the first failing check wins."""
    if len(password) < 8:
        raise ValueError("Password must be longer than 8 symbols")
    if all(char.isalnum() for char in password):
        raise ValueError("Password must contain a special character")
    if not any(char.isupper() for char in password):
        raise ValueError("Password must contain an uppercase character")
    if not any(char.islower() for char in password):
        raise ValueError("Password must contain an lowercase character")
    if not any(char.isdigit() for char in password):
        raise ValueError("Password must contain an numeric character")
    return password


class RegisterBody(BaseModel):
    # The unique index cannot hold arbitrarily long keys.
    username: str = Field(max_length=255)
    password: str

    @field_validator("password")
    @classmethod
    def _policy(cls, value: str) -> str:
        return check_password_policy(value)


class UserOut(BaseModel):
    id: UUID
    username: str
    created_at: Timestamp
    updated_at: Timestamp


class LoginForm(BaseModel):
    username: str
    password: str
    grant_type: str | None = Field(None, pattern="^password$")
    scope: str = ""
    client_id: str | None = None
    client_secret: str | None = None


class TokenOut(BaseModel):
    access_token: str
    refresh_token: str | None = None
    token_type: str = "Bearer"


class ValidateTokenBody(BaseModel):
    token: str


class DetailOut(BaseModel):
    detail: str


@blueprint.post("/api/register")
@validate_body(RegisterBody)
@responds(UserOut)
async def register(data: RegisterBody) -> Any:
    """Create a user, their Default project and an empty profile."""
    found = services()
    hashed = await hash_password(data.password, found.settings.BCRYPT_ROUNDS)
    try:
        async with found.sessionmaker.begin() as session:
            user = await UserRepository(session).add(data.username, hashed)
    except AlreadyExistsError:
        raise APIError(400, f"User '{data.username}' already exists") from None
    return json_response(UserOut.model_validate(user, from_attributes=True))


@blueprint.post("/api/login/access-token")
@validate_form(LoginForm)
@responds(TokenOut)
async def login(data: LoginForm) -> Any:
    """Exchange a username and password (OAuth2 password form) for a user token.

    Past ``LOGIN_FAILURES_PER_USER`` failures for the username, or
    ``LOGIN_FAILURES_PER_ADDRESS`` from the client's address, within
    ``LOGIN_FAILURE_WINDOW_SECONDS``, the answer is 429 with ``Retry-After`` and the
    password is not checked.
    """
    found = services()
    throttle, address = found.login_throttle(), request.remote_addr or ""
    if wait := throttle.retry_after(data.username, address):
        raise APIError(429, TOO_MANY_ATTEMPTS, headers={"Retry-After": str(wait)})
    async with read_session() as session:
        user = await UserRepository(session).get_by_username(data.username)
    # Verify against a dummy hash when the user is missing: same cost either way.
    hashed = user.password if user is not None else await dummy_hash(found.settings.BCRYPT_ROUNDS)
    if not await verify_password(data.password, hashed) or user is None:
        throttle.failed(data.username, address)
        raise APIError(400, "Incorrect username or password")
    throttle.succeeded(data.username)
    return json_response(TokenOut(access_token=issue_user_token(user.id, found.settings)))


@blueprint.post("/api/validate-token")
@validate_body(ValidateTokenBody)
@responds(DetailOut)
async def validate_token(data: ValidateTokenBody) -> Any:
    """Tell whether a user token is valid and its user exists."""
    if await resolve_token(data.token, allow_agent=False) is None:
        raise APIError(400, "Token is invalid or expired. Please log in again")
    return json_response(DetailOut(detail="Token is valid"))
