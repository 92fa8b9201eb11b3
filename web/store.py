"""Database access for the routes of this package: one class per aggregate.

Each class wraps an ``AsyncSession``, never commits (the route owns
``async with sessionmaker.begin()``) and returns loaded rows.
"""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from persistence import Agent, AgentFlow, AlreadyExistsError, Project, User, UserProfile
from persistence._models import UserProjectAssociation  # not re-exported: no behaviour

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["AgentStore", "AuthStore", "FlowStore", "UserStore", "make_alias"]


def make_alias(name: str) -> str:
    """Return ``<name>_<6 random lowercase letters>``."""
    return f"{name}_{''.join(secrets.choice(string.ascii_lowercase) for _ in range(6))}"


class AuthStore:
    """The look-ups behind every authenticated request."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def user_exists(self, user_id: UUID) -> bool:
        """Tell whether the user exists."""
        found = await self._session.scalar(select(User.id).where(User.id == user_id))
        return found is not None

    async def agent_token_is_live(self, agent_id: UUID, user_id: UUID) -> bool:
        """Tell whether ``agent_id`` still exists and belongs to ``user_id``."""
        found = await self._session.scalar(
            select(Agent.id).where(Agent.id == agent_id, Agent.creator_id == user_id)
        )
        return found is not None


class UserStore:
    """Users and their profiles."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get_by_username(self, username: str) -> User | None:
        """Return the user named ``username``, if any."""
        return await self._session.scalar(select(User).where(User.username == username))

    async def add(self, username: str, password_hash: str) -> User:
        """Insert a user with their Default project and an empty profile.

        Raises:
            AlreadyExistsError: the username is taken.
        """
        user = User(id=uuid4(), username=username, password=password_hash)
        project = Project(id=uuid4(), name="Default")
        self._session.add_all([user, project])
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise AlreadyExistsError(username, constraint="users_username_key") from exc
        self._session.add_all(
            [
                UserProjectAssociation(user_id=user.id, project_id=project.id),  # type: ignore[call-arg]
                UserProfile(id=uuid4(), user_id=user.id),
            ]
        )
        await self._session.flush()
        await self._session.refresh(user)
        return user

    async def get_profile(self, user_id: UUID) -> UserProfile | None:
        """Return the profile of ``user_id``, if any."""
        return await self._session.scalar(
            select(UserProfile).where(UserProfile.user_id == user_id).limit(1)
        )


class AgentStore:
    """Agents, always scoped to their creator."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def exists(self, agent_id: UUID) -> bool:
        """Tell whether any user has an agent with this id."""
        found = await self._session.scalar(select(Agent.id).where(Agent.id == agent_id))
        return found is not None

    async def add(self, agent: Agent) -> Agent:
        """Insert ``agent``.

        Raises:
            AlreadyExistsError: the id (or, rarely, the alias or token) is taken.
        """
        self._session.add(agent)
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise AlreadyExistsError(str(agent.id)) from exc
        await self._session.refresh(agent)
        return agent

    async def get(self, user_id: UUID, agent_id: UUID) -> Agent | None:
        """Return the user's agent, or None (missing and foreign look the same)."""
        return await self._session.scalar(
            select(Agent).where(Agent.id == agent_id, Agent.creator_id == user_id)
        )

    async def list(
        self,
        user_id: UUID,
        *,
        name: str | None,
        description: str | None,
        offset: int,
        limit: int,
    ) -> Sequence[Agent]:
        """List the user's agents in one query.

        With a ``name`` (exact) or ``description`` (case-insensitive substring) filter the
        newest come first; without one only agents with a name and a description are
        listed, oldest first.
        """
        query = select(Agent).where(Agent.creator_id == user_id)
        if name is None and description is None:
            query = query.where(Agent.name != "", Agent.description != "").order_by(
                Agent.created_at.asc(), Agent.id
            )
        else:
            if name is not None:
                query = query.where(Agent.name == name)
            if description is not None:
                pattern = description.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                query = query.where(Agent.description.ilike(f"%{pattern}%", escape="\\"))
            query = query.order_by(Agent.created_at.desc(), Agent.id)
        result = await self._session.scalars(query.offset(offset).limit(limit))
        return result.all()

    async def list_active(
        self, user_id: UUID, *, offset: int = 0, limit: int | None = None
    ) -> Sequence[Agent]:
        """List the user's active agents, newest first."""
        result = await self._session.scalars(
            select(Agent)
            .where(Agent.creator_id == user_id, Agent.is_active.is_(True))
            .order_by(Agent.created_at.desc(), Agent.id)
            .offset(offset)
            .limit(limit)
        )
        return result.all()

    async def delete(self, user_id: UUID, agent_id: UUID) -> bool:
        """Delete the user's agent and deactivate the user's flows that use it.

        Returns:
            False when the user has no such agent.
        """
        deleted = await self._session.scalar(
            delete(Agent)
            .where(Agent.id == agent_id, Agent.creator_id == user_id)
            .returning(Agent.id)
        )
        if deleted is None:
            return False
        flows = await self._session.scalars(
            select(AgentFlow).where(AgentFlow.creator_id == user_id, AgentFlow.is_active)
        )
        stale = [flow.id for flow in flows if str(agent_id) in flow_item_ids(flow.flow)]
        if stale:
            await self._session.execute(
                update(AgentFlow).where(AgentFlow.id.in_(stale)).values(is_active=False)
            )
        return True


def flow_item_ids(items: Any) -> list[str]:
    """Return the item ids of a stored flow (either release's item shape)."""
    if not isinstance(items, list):
        return []
    ids = []
    for item in items:
        if isinstance(item, dict):
            value = item.get("id", item.get("agent_id"))
            if isinstance(value, str):
                ids.append(value.lower())
    return ids


class FlowStore:
    """Agent flows, always scoped to their creator."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def valid_genai_ids(self, user_id: UUID, ids: Iterable[UUID]) -> set[UUID]:
        """Return which of ``ids`` are the user's own active agents."""
        wanted = set(ids)
        if not wanted:
            return set()
        result = await self._session.scalars(
            select(Agent.id).where(
                Agent.id.in_(wanted), Agent.creator_id == user_id, Agent.is_active.is_(True)
            )
        )
        return set(result.all())

    async def active_agent_ids(self, user_id: UUID) -> set[str]:
        """Return the ids (as text) of all the user's active agents."""
        result = await self._session.scalars(
            select(Agent.id).where(Agent.creator_id == user_id, Agent.is_active.is_(True))
        )
        return {str(agent_id) for agent_id in result.all()}

    async def add(self, flow: AgentFlow) -> AgentFlow:
        """Insert ``flow``."""
        self._session.add(flow)
        await self._session.flush()
        await self._session.refresh(flow)
        return flow

    async def get(self, user_id: UUID, flow_id: UUID) -> AgentFlow | None:
        """Return the user's flow, or None."""
        return await self._session.scalar(
            select(AgentFlow).where(AgentFlow.id == flow_id, AgentFlow.creator_id == user_id)
        )

    async def list(self, user_id: UUID, *, offset: int, limit: int) -> Sequence[AgentFlow]:
        """List the user's flows, newest first."""
        result = await self._session.scalars(
            select(AgentFlow)
            .where(AgentFlow.creator_id == user_id)
            .order_by(AgentFlow.created_at.desc(), AgentFlow.id)
            .offset(offset)
            .limit(limit)
        )
        return result.all()

    async def list_all(self, user_id: UUID) -> Sequence[AgentFlow]:
        """List all the user's flows, newest first."""
        result = await self._session.scalars(
            select(AgentFlow)
            .where(AgentFlow.creator_id == user_id)
            .order_by(AgentFlow.created_at.desc(), AgentFlow.id)
        )
        return result.all()

    async def delete(self, user_id: UUID, flow_id: UUID) -> bool:
        """Delete the user's flow; False when there is none."""
        deleted = await self._session.scalar(
            delete(AgentFlow)
            .where(AgentFlow.id == flow_id, AgentFlow.creator_id == user_id)
            .returning(AgentFlow.id)
        )
        return deleted is not None
