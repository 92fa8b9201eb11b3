"""Chat conversations and their messages."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select

from .._exceptions import NotFoundError
from .._models import ChatConversation, ChatMessage, SenderType
from ._base import Repository

__all__ = ["ChatRepository", "MessagePage"]


@dataclasses.dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a conversation's messages, newest first, and the total count."""

    total_count: int
    items: Sequence[ChatMessage]


class ChatRepository(Repository):
    """Conversations (keyed by the front-end's session id), scoped to their creator."""

    async def create_conversation(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, title: str
    ) -> ChatConversation:
        """Create a conversation.

        Raises:
            AlreadyExistsError: the session id is taken (by anyone).
        """
        await self._ensure_absent(ChatConversation, session_id, "chatconversations_pkey")
        row = ChatConversation(session_id=session_id, creator_id=owner_id, title=title)
        async with self._writing():
            self.session.add(row)
        return row

    async def get_conversation(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID
    ) -> ChatConversation | None:
        """Return the owner's conversation, or None."""
        return await self.session.scalar(
            select(ChatConversation).where(
                ChatConversation.session_id == session_id,
                ChatConversation.creator_id == owner_id,
            )
        )

    async def list_conversations(
        self, owner_id: uuid.UUID, *, offset: int = 0, limit: int = 100
    ) -> Sequence[ChatConversation]:
        """List the owner's conversations, newest first."""
        stmt = (
            select(ChatConversation)
            .where(ChatConversation.creator_id == owner_id)
            .order_by(ChatConversation.created_at.desc(), ChatConversation.session_id)
            .offset(offset)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def rename_conversation(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, title: str
    ) -> ChatConversation:
        """Change the title of the owner's conversation.

        Raises:
            NotFoundError: no such conversation of this owner.
        """
        row = await self.get_conversation(session_id, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"conversation {session_id} not found")
        row.title = title
        await self.session.flush()
        return row

    async def delete_conversation(self, session_id: uuid.UUID, *, owner_id: uuid.UUID) -> None:
        """Delete the owner's conversation with its messages.

        Raises:
            NotFoundError: no such conversation of this owner.
        """
        row = await self.get_conversation(session_id, owner_id=owner_id)
        if row is None:
            raise NotFoundError(f"conversation {session_id} not found")
        await self.session.delete(row)
        await self.session.flush()

    async def add_message(
        self,
        session_id: uuid.UUID,
        *,
        sender_type: SenderType,
        content: str,
        request_id: uuid.UUID | None = None,
        extra_metadata: dict[str, Any] | None = None,
    ) -> ChatMessage:
        """Add a message to a conversation (the caller has checked its owner).

        Raises:
            NotFoundError: the conversation does not exist.
        """
        row = ChatMessage(
            id=uuid.uuid4(),
            conversation_id=session_id,
            sender_type=sender_type,
            content=content,
            request_id=request_id,
            extra_metadata=extra_metadata,
        )
        async with self._writing():
            self.session.add(row)
        return row

    async def page_messages(
        self, session_id: uuid.UUID, *, owner_id: uuid.UUID, page: int = 1, per_page: int = 100
    ) -> MessagePage:
        """Return page *page* (from 1) of the owner's conversation, newest message first.

        An unknown or foreign conversation gives an empty page with a zero count.
        """
        if page < 1 or per_page < 1:
            raise ValueError("page and per_page must be at least 1")
        owned = _owned_messages(session_id, owner_id)
        items = await self.session.scalars(
            _newest_first(owned).limit(per_page).offset((page - 1) * per_page)
        )
        return MessagePage(total_count=await self._count(owned), items=items.all())

    async def current_message(self, session_id: uuid.UUID, *, owner_id: uuid.UUID) -> MessagePage:
        """Return the owner's conversation's current message: its newest user message.

        The page holds that message alone (none when there is none) and the count of
        every message; an unknown or foreign conversation gives an empty page.
        """
        owned = _owned_messages(session_id, owner_id)
        items = await self.session.scalars(
            _newest_first(owned.where(ChatMessage.sender_type == SenderType.USER)).limit(1)
        )
        return MessagePage(total_count=await self._count(owned), items=items.all())

    async def _count(self, messages: Select[ChatMessage]) -> int:
        return await self.session.scalar(select(func.count()).select_from(messages.subquery())) or 0


def _owned_messages(session_id: uuid.UUID, owner_id: uuid.UUID) -> Select[ChatMessage]:
    """Select the messages of the conversation if it is the owner's (none otherwise)."""
    return (
        select(ChatMessage)
        .join(ChatConversation, ChatConversation.session_id == ChatMessage.conversation_id)
        .where(
            ChatMessage.conversation_id == session_id,
            ChatConversation.creator_id == owner_id,
        )
    )


def _newest_first(messages: Select[ChatMessage]) -> Select[ChatMessage]:
    return messages.order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
