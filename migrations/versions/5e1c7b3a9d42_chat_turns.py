"""Chat turns and their events.

Revision ID: 5e1c7b3a9d42
Revises: 4f8a2c6e1b93
Create Date: 2026-12-04

Each accepted chat message becomes a row of ``chatturns`` (its status and times), and
each step of it a row of ``chatturnevents``, numbered per conversation, which sockets
replay after a reconnect and ``GET /api/chat/turns/{request_id}`` shows. Both go with
their conversation.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "5e1c7b3a9d42"
down_revision = "4f8a2c6e1b93"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chatturns",
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("now()"), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("delivered", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("process_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chatconversations.session_id"],
            name="chatturns_session_id_fkey",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="chatturns_user_id_fkey", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("request_id", name="chatturns_pkey"),
    )
    op.create_index("ix_chatturns_session_id", "chatturns", ["session_id"])
    op.create_index("ix_chatturns_user_id", "chatturns", ["user_id"])
    op.create_index("ix_chatturns_status_process_id", "chatturns", ["status", "process_id"])
    op.create_table(
        "chatturnevents",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["chatconversations.session_id"],
            name="chatturnevents_session_id_fkey",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name="chatturnevents_pkey"),
    )
    op.create_index("ix_chatturnevents_request_id", "chatturnevents", ["request_id"])
    op.create_index("ix_chatturnevents_created_at", "chatturnevents", ["created_at"])


def downgrade() -> None:
    op.drop_table("chatturnevents")
    op.drop_table("chatturns")
