"""Chat conversations (keyed by the front-end's session id) and their history."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit
from uuid import UUID

from pydantic import BaseModel, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from quart import Blueprint, request
from quart_schema import tag_blueprint

from persistence import (
    AlreadyExistsError,
    ChatConversation,
    ChatMessage,
    ChatRepository,
    NotFoundError,
)

from ..auth import Caller, requires_service, requires_user
from ..common import PageQuery, Timestamp, empty_response, json_response
from ..errors import APIError
from ..services import services
from ..validation import responds, validate_body, validate_query

__all__ = ["blueprint"]

blueprint = Blueprint("chats", __name__)
tag_blueprint(blueprint, ["chats"])

TITLE_LIMIT = 20
MAX_PER_PAGE = 100


def _title(value: str) -> str:
    if not value:
        raise ValueError("Chat title must not be empty")
    if len(value) > TITLE_LIMIT:
        raise ValueError(f"Chat title must not be longer than {TITLE_LIMIT} symbols")
    return value


class NewChatBody(BaseModel):
    session_id: UUID
    title: str

    _check_title = field_validator("title")(_title)


class TitleBody(BaseModel):
    title: str

    _check_title = field_validator("title")(_title)


class SessionQuery(BaseModel):
    session_id: UUID


class HistoryQuery(BaseModel):
    session_id: UUID
    user_id: UUID | None = None
    page: int = Field(1, ge=1, le=2**62)
    # 0 only from the master (see _per_page).
    per_page: int = Field(100, ge=0, le=MAX_PER_PAGE)

    @field_validator("per_page")
    @classmethod
    def _per_page(cls, value: int, info: ValidationInfo) -> int:
        # The master sends its config's max_last_messages, which may be 0, and asks by
        # user_id (a user token with user_id never reaches the route). Users page by 1+.
        if value == 0 and info.data.get("user_id") is None:
            raise PydanticCustomError(
                "greater_than_equal", "Input should be greater than or equal to {ge}", {"ge": 1}
            )
        return value


class ChatSummary(BaseModel):
    session_id: UUID
    title: str
    created_at: Timestamp
    updated_at: Timestamp


class ChatList(BaseModel):
    chats: list[ChatSummary]


class ChatRow(BaseModel):
    session_id: UUID
    title: str
    creator_id: UUID | None
    created_at: Timestamp
    updated_at: Timestamp

    @classmethod
    def of(cls, row: ChatConversation) -> ChatRow:
        return cls(
            session_id=row.session_id,
            title=row.title,
            creator_id=row.creator_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class HistoryItem(BaseModel):
    sender_type: str
    content: str
    request_id: UUID | None
    created_at: Timestamp

    @classmethod
    def of(cls, row: ChatMessage) -> HistoryItem:
        return cls(
            sender_type=str(row.sender_type),
            content=row.content,
            request_id=row.request_id,
            created_at=row.created_at,
        )


class History(BaseModel):
    total_count: int
    next_page: str | None
    previous_page: str | None
    items: list[HistoryItem]


def _page_url(page: int) -> str:
    """Return the absolute request URL with ``page`` replaced."""
    parts = urlsplit(request.url)
    query = [(key, value) for key, value in request.args.items(multi=True) if key != "page"]
    query.append(("page", str(page)))
    return urlunsplit(parts._replace(query=urlencode(query)))


@blueprint.get("/api/chats")
@requires_user
@validate_query(PageQuery)
@responds(ChatList)
async def list_chats(query: PageQuery, caller: Caller) -> Any:
    """List the caller's conversations, newest first."""
    async with services().sessionmaker() as session:
        rows = await ChatRepository(session).list_conversations(
            caller.user_id, offset=query.offset, limit=query.limit
        )
    chats = [ChatSummary.model_validate(row, from_attributes=True) for row in rows]
    return json_response(ChatList(chats=chats))


@blueprint.post("/api/chats")
@requires_user
@validate_body(NewChatBody)
@responds(ChatRow)
async def create_chat(data: NewChatBody, caller: Caller) -> Any:
    """Create a conversation for a session id nobody uses yet."""
    taken = APIError(400, f"Chat with Session_id - '{data.session_id}' already exists")
    try:
        async with services().sessionmaker.begin() as session:
            row = await ChatRepository(session).create_conversation(
                data.session_id, owner_id=caller.user_id, title=data.title
            )
            await session.refresh(row)
    except AlreadyExistsError:
        raise taken from None
    return json_response(ChatRow.of(row))


@blueprint.get("/api/chat")
@requires_service
@validate_query(HistoryQuery)
@responds(History)
async def chat_history(query: HistoryQuery, caller: Caller) -> Any:
    """Return one page of a conversation's messages, newest first.

    ``per_page=0`` (the master, for a config that keeps no history) answers the
    conversation's current message alone: its newest user message.
    """
    if query.per_page == 0:
        async with services().sessionmaker() as session:
            current = await ChatRepository(session).current_message(
                query.session_id, owner_id=caller.user_id
            )
        items = [HistoryItem.of(row) for row in current.items]
        out = History(
            total_count=current.total_count, next_page=None, previous_page=None, items=items
        )
        return json_response(out)
    async with services().sessionmaker() as session:
        page = await ChatRepository(session).page_messages(
            query.session_id, owner_id=caller.user_id, page=query.page, per_page=query.per_page
        )
    pages = math.ceil(page.total_count / query.per_page)
    next_page = None if query.page >= pages else _page_url(query.page + 1)
    previous_page = None if query.page == 1 or query.page > pages + 1 else _page_url(query.page - 1)
    out = History(
        total_count=page.total_count,
        next_page=next_page,
        previous_page=previous_page,
        items=[HistoryItem.of(row) for row in page.items],
    )
    return json_response(out)


@blueprint.patch("/api/chat")
@requires_user
@validate_query(SessionQuery)
@validate_body(TitleBody)
@responds(ChatRow)
async def rename_chat(query: SessionQuery, data: TitleBody, caller: Caller) -> Any:
    """Change the title of one of the caller's conversations."""
    async with services().sessionmaker.begin() as session:
        try:
            row = await ChatRepository(session).rename_conversation(
                query.session_id, owner_id=caller.user_id, title=data.title
            )
        except NotFoundError:
            raise APIError(400, f"Chat with session_id {query.session_id} does not exist") from None
        await session.refresh(row)
        out = ChatRow.of(row)
    return json_response(out)


@blueprint.delete("/api/chat")
@requires_user
@validate_query(SessionQuery)
@responds(None, 204)
async def delete_chat(query: SessionQuery, caller: Caller) -> Any:
    """Delete one of the caller's conversations with its messages."""
    async with services().sessionmaker.begin() as session:
        try:
            await ChatRepository(session).delete_conversation(
                query.session_id, owner_id=caller.user_id
            )
        except NotFoundError:
            detail = f"Chat with session_id: '{query.session_id}' does not exist"
            raise APIError(400, detail) from None
    return empty_response()
