"""Server processes and their heartbeats.

Revision ID: c7a4e2d9b815
Revises: 5e1c7b3a9d42
Create Date: 2026-12-04

Each running ``serve`` process keeps a row of ``backendprocesses`` and moves its
``last_seen`` forward every few seconds; its peers take a row that stopped moving for a
process that died, finish the chat turns it left open and delete the row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c7a4e2d9b815"
down_revision = "5e1c7b3a9d42"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backendprocesses",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("started_at", sa.DateTime(), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen", sa.DateTime(), server_default=sa.text("now()"), nullable=False),
        sa.Column("http_url", sa.Text(), nullable=True),
        sa.Column("owns_router", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("hostname", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="backendprocesses_pkey"),
    )


def downgrade() -> None:
    op.drop_table("backendprocesses")
