"""ORM models: the schema at head, column for column as the original back-end made it.

Names follow PostgreSQL's own defaults (``<table>_pkey``, ``<table>_<col>_key``,
``<table>_<col>_fkey``) and alembic's ``ix_<table>_<col>`` for indexes, so a database
created by the original back-end and one created by our migrations are the same.
Timestamps are naive UTC.
"""

from __future__ import annotations

import enum
import uuid
import weakref
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import ExecutionContext

__all__ = [
    "A2ACard",
    "Agent",
    "AgentFlow",
    "BackendProcess",
    "Base",
    "ChatConversation",
    "ChatMessage",
    "ChatTurn",
    "ChatTurnEvent",
    "File",
    "Log",
    "MCPServer",
    "MCPTool",
    "ModelConfig",
    "ModelProvider",
    "Project",
    "SenderType",
    "Team",
    "TurnStatus",
    "User",
    "UserProfile",
    "statement_time",
    "utcnow",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "%(table_name)s_%(column_0_N_name)s_key",
    "ck": "%(table_name)s_%(constraint_name)s_check",
    "fk": "%(table_name)s_%(column_0_N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


def utcnow() -> datetime:
    """Return the current time as a naive UTC datetime (the schema's timestamp format)."""
    return datetime.now(UTC).replace(tzinfo=None)


# The instant each running statement stamps its rows with, until the statement is gone.
_statement_times: weakref.WeakKeyDictionary[ExecutionContext, datetime] = (
    weakref.WeakKeyDictionary()
)


def statement_time(context: ExecutionContext) -> datetime:
    """Return the instant of the statement being executed (a column default).

    Every timestamp column a statement fills in gets the same value, so a new row's
    ``created_at`` equals its ``updated_at`` and one UPDATE stamps ``updated_at`` and
    ``last_invoked_at`` alike; rows inserted together share it too. Each column calling
    the clock on its own would set them microseconds apart.
    """
    stamp = _statement_times.get(context)
    if stamp is None:
        stamp = _statement_times[context] = utcnow()
    return stamp


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        str: String(),
        uuid.UUID: Uuid(),
        datetime: DateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        float: Float(),
    }


def _uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, index=True, default=uuid.uuid4)


def _created_at() -> Mapped[datetime]:
    return mapped_column(default=statement_time, server_default=func.now())


def _updated_at() -> Mapped[datetime]:
    # An UPDATE is only sent for a real change (the unit of work skips attributes set to
    # the value they have), so a no-op change leaves the stamp alone.
    return mapped_column(default=statement_time, onupdate=statement_time, server_default=func.now())


def _creator_id() -> Mapped[uuid.UUID | None]:
    return mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _uuid_pk()
    username: Mapped[str] = mapped_column(unique=True, index=True)
    password: Mapped[str]
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class UserProfile(Base):
    __tablename__ = "userprofiles"

    id: Mapped[uuid.UUID] = _uuid_pk()
    first_name: Mapped[str | None]
    last_name: Mapped[str | None]
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str]
    alias: Mapped[str] = mapped_column(unique=True)
    description: Mapped[str]
    jwt: Mapped[str] = mapped_column(unique=True)
    creator_id: Mapped[uuid.UUID | None] = _creator_id()
    # Usually an object; a JSON string when one was posted to the first release.
    input_parameters: Mapped[Any] = mapped_column(JSON())
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    last_invoked_at: Mapped[datetime] = _updated_at()
    is_active: Mapped[bool] = mapped_column(Boolean())


class AgentFlow(Base):
    __tablename__ = "agentworkflows"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str]
    alias: Mapped[str] = mapped_column(unique=True)
    description: Mapped[str]
    # [{"id": "<uuid>", "type": "genai" | "mcp" | "a2a"}, ...]
    flow: Mapped[list[Any]]
    is_active: Mapped[bool]
    creator_id: Mapped[uuid.UUID | None] = _creator_id()
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class Log(Base):
    __tablename__ = "logs"

    id: Mapped[int] = mapped_column(Integer(), primary_key=True, index=True, autoincrement=True)
    session_id: Mapped[uuid.UUID] = mapped_column(index=True)
    request_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # The router client id of the logging agent: an agent UUID or e.g. "master_server_ml".
    agent_id: Mapped[str | None] = mapped_column(index=True)
    creator_id: Mapped[uuid.UUID | None] = _creator_id()
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    message: Mapped[str]
    log_level: Mapped[str]

    __table_args__ = (
        Index("ix_logs_session_id_id", "session_id", "id"),
        Index("ix_logs_request_id_id", "request_id", "id"),
    )


class File(Base):
    __tablename__ = "files"

    id: Mapped[uuid.UUID] = _uuid_pk()
    session_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    request_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
    creator_id: Mapped[uuid.UUID | None] = _creator_id()
    mimetype: Mapped[str]
    original_name: Mapped[str]
    internal_name: Mapped[str]
    internal_id: Mapped[uuid.UUID] = mapped_column(index=True)
    from_agent: Mapped[bool]


class ModelProvider(Base):
    __tablename__ = "modelproviders"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str]
    api_key: Mapped[str | None]
    provider_metadata: Mapped[dict[str, Any]]
    creator_id: Mapped[uuid.UUID | None] = _creator_id()
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    configs: Mapped[list[ModelConfig]] = relationship(
        back_populates="provider",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="ModelConfig.created_at",
    )

    __table_args__ = (UniqueConstraint("creator_id", "name", name="uq_user_item_name"),)


class ModelConfig(Base):
    __tablename__ = "modelconfigs"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str]
    model: Mapped[str] = mapped_column(index=True)
    system_prompt: Mapped[str]
    user_prompt: Mapped[str | None]
    temperature: Mapped[float] = mapped_column(default=0.7)
    max_last_messages: Mapped[int] = mapped_column(Integer(), default=5)
    credentials: Mapped[dict[str, Any]]
    provider_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("modelproviders.id", ondelete="CASCADE"), index=True
    )
    creator_id: Mapped[uuid.UUID | None] = _creator_id()
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    provider: Mapped[ModelProvider | None] = relationship(back_populates="configs", lazy="raise")

    # Names are unique per provider (the original: across all users).
    __table_args__ = (UniqueConstraint("provider_id", "name"),)


class SenderType(enum.StrEnum):
    """Who wrote a chat message."""

    USER = "user"
    MASTER_AGENT = "master_agent"


class ChatConversation(Base):
    __tablename__ = "chatconversations"

    session_id: Mapped[uuid.UUID] = mapped_column(primary_key=True, index=True)
    title: Mapped[str]
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    creator_id: Mapped[uuid.UUID | None] = _creator_id()


class ChatMessage(Base):
    __tablename__ = "chatmessages"

    id: Mapped[uuid.UUID] = _uuid_pk()
    request_id: Mapped[uuid.UUID | None]
    sender_type: Mapped[SenderType] = mapped_column(
        Enum(
            SenderType,
            name="sendertype",
            values_callable=lambda members: [m.value for m in members],
        )
    )
    content: Mapped[str]
    extra_metadata: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("chatconversations.session_id", ondelete="CASCADE"), index=True
    )

    __table_args__ = (
        Index("ix_chatmessages_conversation_id_created_at", "conversation_id", "created_at"),
    )


class TurnStatus(enum.StrEnum):
    """Where a chat turn is: ``queued`` → ``running`` → one of the four ends."""

    QUEUED = "queued"
    RUNNING = "running"
    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class ChatTurn(Base):
    """One accepted chat message and how its turn went (ours; the original has none).

    ``delivered`` tells whether the reply reached an open socket; one that did not is
    sent to the session's next socket. ``process_id`` is the server process running it.
    A conversation has at most one ``running`` turn, whichever process runs it
    (``chatturns_one_running``).
    """

    __tablename__ = "chatturns"

    request_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chatconversations.session_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    delivered: Mapped[bool] = mapped_column(server_default="false")
    process_id: Mapped[uuid.UUID | None]

    __table_args__ = (
        Index("ix_chatturns_status_process_id", "status", "process_id"),
        Index(
            "chatturns_one_running",
            "session_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
    )


class ChatTurnEvent(Base):
    """One step of a turn, numbered per conversation (``seq`` from 1, gap-free)."""

    __tablename__ = "chatturnevents"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chatconversations.session_id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger(), primary_key=True)
    request_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # No key of its own: the conversation's cascade removes a user's events.
    user_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB(), server_default="{}")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class MCPServer(Base):
    __tablename__ = "mcpservers"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str | None]
    description: Mapped[str | None]
    server_url: Mapped[str]
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    creator_id: Mapped[uuid.UUID | None] = _creator_id()
    is_active: Mapped[bool]

    __table_args__ = (UniqueConstraint("creator_id", "server_url", name="uq_mcp_server_url"),)


class MCPTool(Base):
    __tablename__ = "mcptools"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str]
    description: Mapped[str | None]
    input_schema: Mapped[dict[str, Any]] = mapped_column("inputSchema")
    annotations: Mapped[dict[str, Any] | None]
    alias: Mapped[str | None]
    mcp_server_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("mcpservers.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()


class A2ACard(Base):
    __tablename__ = "a2acards"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str | None]
    alias: Mapped[str | None]
    description: Mapped[str | None]
    server_url: Mapped[str]
    card_content: Mapped[dict[str, Any]]
    is_active: Mapped[bool]
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()
    creator_id: Mapped[uuid.UUID | None] = _creator_id()

    __table_args__ = (UniqueConstraint("creator_id", "server_url", name="uq_a2a_card_server_url"),)


# Tables of the first release that carry no behaviour. Registration still writes a
# Default project per user, as the original does.


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str]


class Team(Base):
    __tablename__ = "teams"

    id: Mapped[uuid.UUID] = _uuid_pk()
    name: Mapped[str] = mapped_column(unique=True)


def _association(name: str, left: tuple[str, str], right: tuple[str, str]) -> type[Base]:
    """Build one of the serial-keyed many-to-many tables of the first release."""
    (lcol, ltarget), (rcol, rtarget) = left, right
    attrs: dict[str, Any] = {
        "__tablename__": name,
        "__annotations__": {"id": Mapped[int], lcol: Mapped[uuid.UUID], rcol: Mapped[uuid.UUID]},
        "id": mapped_column(Integer(), primary_key=True, index=True, autoincrement=True),
        lcol: mapped_column(ForeignKey(ltarget, ondelete="CASCADE"), index=True),
        rcol: mapped_column(ForeignKey(rtarget, ondelete="CASCADE"), index=True),
    }
    return type("".join(p.title() for p in name.split("_")), (Base,), attrs)


UserProjectAssociation = _association(
    "user_project_associations", ("user_id", "users.id"), ("project_id", "projects.id")
)
UserTeamAssociation = _association(
    "user_team_associations", ("user_id", "users.id"), ("team_id", "teams.id")
)
AgentProjectAssociation = _association(
    "agent_project_associations", ("agent_id", "agents.id"), ("project_id", "projects.id")
)
AgentflowProjectAssociation = _association(
    "agentflow_project_associations",
    ("flow_id", "agentworkflows.id"),
    ("project_id", "projects.id"),
)


class BackendProcess(Base):
    """One running server process and the last time it said so (ours; the original has none).

    Each ``serve`` process writes its row at start and moves ``last_seen`` forward every
    ``HEARTBEAT_SECONDS`` (the database's clock, naive UTC); a row that stopped moving is
    a process that died, whose peers finish its open chat turns and delete the row.
    """

    __tablename__ = "backendprocesses"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_seen: Mapped[datetime] = mapped_column(server_default=func.now())
    http_url: Mapped[str | None] = mapped_column(Text())
    owns_router: Mapped[bool] = mapped_column(server_default="false")
    pid: Mapped[int | None]
    hostname: Mapped[str | None] = mapped_column(Text())
