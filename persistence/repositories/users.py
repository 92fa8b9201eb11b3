"""Users and their profiles."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from .._exceptions import NotFoundError
from .._models import Project, User, UserProfile
from .._models import UserProjectAssociation as _UserProject
from ._base import Repository, apply_changes

__all__ = ["ProfileRepository", "UserRepository"]

DEFAULT_PROJECT = "Default"


class UserRepository(Repository):
    """Users."""

    async def get(self, user_id: uuid.UUID) -> User | None:
        """Return the user, or None."""
        return await self.session.get(User, user_id)

    async def exists(self, user_id: uuid.UUID) -> bool:
        """Tell whether the user exists, without loading it."""
        found = await self.session.scalar(select(User.id).where(User.id == user_id))
        return found is not None

    async def get_by_username(self, username: str) -> User | None:
        """Return the user with this exact username, or None."""
        return await self.session.scalar(select(User).where(User.username == username))

    async def add(self, username: str, password_hash: str) -> User:
        """Add a user with an empty profile and a ``Default`` project.

        Raises:
            AlreadyExistsError: the username is taken.
        """
        user = User(id=uuid.uuid4(), username=username, password=password_hash)
        project = Project(id=uuid.uuid4(), name=DEFAULT_PROJECT)
        async with self._writing():
            self.session.add_all([user, project])
            await self.session.flush()
            self.session.add_all(
                [
                    UserProfile(id=uuid.uuid4(), user_id=user.id),
                    _UserProject(user_id=user.id, project_id=project.id),
                ]
            )
        return user


class ProfileRepository(Repository):
    """User profiles; each user sees only their own."""

    async def get(self, owner_id: uuid.UUID) -> UserProfile | None:
        """Return the owner's profile, or None."""
        return await self.session.scalar(
            select(UserProfile).where(UserProfile.user_id == owner_id).limit(1)
        )

    async def patch(self, owner_id: uuid.UUID, **changes: Any) -> UserProfile:
        """Change ``first_name`` and/or ``last_name`` of the owner's profile.

        Raises:
            NotFoundError: the owner has no profile.
        """
        profile = await self.get(owner_id)
        if profile is None:
            raise NotFoundError(f"profile of user {owner_id} not found")
        apply_changes(profile, changes, ("first_name", "last_name"))
        await self.session.flush()
        return profile
