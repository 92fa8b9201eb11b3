"""User profiles, readable and writable by their owner only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel
from quart import Blueprint
from quart_schema import tag_blueprint

from persistence import NotFoundError, ProfileRepository

from ..auth import Caller, requires_user
from ..common import json_response, read_session
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_body, validate_path

__all__ = ["blueprint"]

blueprint = Blueprint("profiles", __name__)
tag_blueprint(blueprint, ["profiles"])


class ProfileOut(BaseModel):
    id: UUID
    user_id: UUID
    first_name: str | None
    last_name: str | None


class ProfilePatch(BaseModel):
    first_name: str | None = None
    last_name: str | None = None


def _not_found(user_id: UUID) -> APIError:
    return APIError(400, f"Profile with of user with id '{user_id}' was not found")


@blueprint.get("/api/profiles/<user_id>")
@requires_user
@validate_path(user_id=UUID)
@responds(ProfileOut)
async def get_profile(user_id: UUID, caller: Caller) -> Any:
    """Return the caller's own profile."""
    if user_id != caller.user_id:
        raise _not_found(user_id)
    async with read_session() as session:
        profile = await ProfileRepository(session).get(user_id)
    if profile is None:
        raise _not_found(user_id)
    return json_response(ProfileOut.model_validate(profile, from_attributes=True))


@blueprint.patch("/api/profiles/<user_id>")
@requires_user
@validate_path(user_id=UUID)
@validate_body(ProfilePatch)
@responds(ProfileOut)
async def patch_profile(user_id: UUID, data: ProfilePatch, caller: Caller) -> Any:
    """Change the fields sent of the caller's own profile."""
    if user_id != caller.user_id:
        raise _not_found(user_id)
    try:
        async with services().sessionmaker.begin() as session:
            profile = await ProfileRepository(session).patch(
                user_id, **data.model_dump(include=data.model_fields_set)
            )
    except NotFoundError:
        raise _not_found(user_id) from None
    return json_response(ProfileOut.model_validate(profile, from_attributes=True))
