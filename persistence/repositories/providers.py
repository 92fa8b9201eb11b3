"""Model providers and model configs."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from .._exceptions import NotFoundError
from .._models import ModelConfig, ModelProvider
from ._base import Repository, apply_changes

__all__ = ["ConfigRepository", "ProviderRepository"]

_PROVIDER_PATCHABLE = ("name", "api_key", "provider_metadata")
_CONFIG_PATCHABLE = (
    "name",
    "model",
    "system_prompt",
    "user_prompt",
    "temperature",
    "max_last_messages",
    "credentials",
)


class ProviderRepository(Repository):
    """Model providers, scoped to their creator; returned with ``configs`` loaded."""

    def _select(self, owner_id: uuid.UUID) -> Any:
        return (
            select(ModelProvider)
            .where(ModelProvider.creator_id == owner_id)
            .options(selectinload(ModelProvider.configs))
            .execution_options(populate_existing=True)
        )

    async def add(
        self,
        *,
        creator_id: uuid.UUID,
        name: str,
        api_key: str | None,
        provider_metadata: dict[str, Any],
    ) -> ModelProvider:
        """Add a provider (with no configs yet).

        Raises:
            AlreadyExistsError: the owner already has a provider of this name.
        """
        row = ModelProvider(
            id=uuid.uuid4(),
            creator_id=creator_id,
            name=name,
            api_key=api_key,
            provider_metadata=provider_metadata,
            configs=[],
        )
        async with self._writing():
            self.session.add(row)
        return row

    async def get(self, provider_id: uuid.UUID, *, owner_id: uuid.UUID) -> ModelProvider | None:
        """Return the owner's provider, or None."""
        stmt = self._select(owner_id).where(ModelProvider.id == provider_id)
        return await self.session.scalar(stmt)

    async def get_by_name(self, name: str, *, owner_id: uuid.UUID) -> ModelProvider | None:
        """Return the owner's provider of this name, or None."""
        stmt = self._select(owner_id).where(ModelProvider.name == name)
        return await self.session.scalar(stmt)

    async def list_for_user(
        self, owner_id: uuid.UUID, *, offset: int = 0, limit: int = 100
    ) -> Sequence[ModelProvider]:
        """List the owner's providers with their configs, newest provider first."""
        stmt = (
            self._select(owner_id)
            .order_by(ModelProvider.created_at.desc(), ModelProvider.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def patch(self, name: str, *, owner_id: uuid.UUID, **changes: Any) -> ModelProvider:
        """Change ``api_key``, ``provider_metadata`` or ``name`` of the owner's provider.

        Raises:
            NotFoundError: no provider of this name for the owner.
            AlreadyExistsError: the new name is taken.
        """
        row = await self.get_by_name(name, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"provider {name!r} not found")
        return await self.change(row, **changes)

    async def change(self, row: ModelProvider, **changes: Any) -> ModelProvider:
        """Change fields of a provider the caller has loaded, as :meth:`patch` does.

        Raises:
            AlreadyExistsError: the new name is taken.
        """
        async with self._writing():
            apply_changes(row, changes, _PROVIDER_PATCHABLE)
        return row

    async def delete(self, name: str, *, owner_id: uuid.UUID) -> None:
        """Delete the owner's provider and its configs.

        Raises:
            NotFoundError: no provider of this name for the owner.
        """
        row = await self.get_by_name(name, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"provider {name!r} not found")
        await self.session.delete(row)
        await self.session.flush()


class ConfigRepository(Repository):
    """Model configs, scoped to their creator; returned with ``provider`` loaded."""

    def _select(self, owner_id: uuid.UUID) -> Any:
        return (
            select(ModelConfig)
            .where(ModelConfig.creator_id == owner_id)
            .options(selectinload(ModelConfig.provider))
        )

    async def add(
        self,
        *,
        creator_id: uuid.UUID,
        provider_id: uuid.UUID,
        name: str,
        model: str,
        system_prompt: str,
        user_prompt: str | None = "",
        temperature: float = 0.7,
        max_last_messages: int = 5,
        credentials: dict[str, Any] | None = None,
    ) -> ModelConfig:
        """Add a config to a provider.

        Raises:
            AlreadyExistsError: the provider already has a config of this name.
            NotFoundError: the provider does not exist.
        """
        row = ModelConfig(
            id=uuid.uuid4(),
            creator_id=creator_id,
            provider_id=provider_id,
            name=name,
            model=model,
            system_prompt=system_prompt,
            user_prompt=user_prompt,
            temperature=temperature,
            max_last_messages=max_last_messages,
            credentials=credentials or {},
        )
        async with self._writing():
            self.session.add(row)
        await self.session.refresh(row, ["provider"])
        return row

    async def get(self, config_id: uuid.UUID, *, owner_id: uuid.UUID) -> ModelConfig | None:
        """Return the owner's config, or None."""
        return await self.session.scalar(self._select(owner_id).where(ModelConfig.id == config_id))

    async def get_by_name(
        self, name: str, *, provider_id: uuid.UUID, owner_id: uuid.UUID
    ) -> ModelConfig | None:
        """Return the owner's config of this name within one provider, or None."""
        stmt = self._select(owner_id).where(
            ModelConfig.name == name, ModelConfig.provider_id == provider_id
        )
        return await self.session.scalar(stmt)

    async def patch(
        self, config_id: uuid.UUID, *, owner_id: uuid.UUID, **changes: Any
    ) -> ModelConfig:
        """Change fields of the owner's config.

        Raises:
            NotFoundError: no such config of this owner.
            AlreadyExistsError: the new name is taken within the provider.
        """
        row = await self.get(config_id, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"config {config_id} not found")
        async with self._writing():
            apply_changes(row, changes, _CONFIG_PATCHABLE)
        return row

    async def delete(self, config_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
        """Delete the owner's config.

        Raises:
            NotFoundError: no such config of this owner.
        """
        row = await self.get(config_id, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"config {config_id} not found")
        await self.session.delete(row)
        await self.session.flush()
