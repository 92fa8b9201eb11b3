"""Config names unique per provider; indexes for owner-scoped log and chat reads.

Revision ID: 7c4e9a1f3d20
Revises: 2b7f3c1d9e40
Create Date: 2025-11-25
"""

from __future__ import annotations

from alembic import op

revision = "7c4e9a1f3d20"
down_revision = "2b7f3c1d9e40"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_constraint("modelconfigs_name_key", "modelconfigs", type_="unique")
    op.create_unique_constraint(
        "modelconfigs_provider_id_name_key", "modelconfigs", ["provider_id", "name"]
    )
    op.create_index("ix_logs_session_id_id", "logs", ["session_id", "id"])
    op.create_index("ix_logs_request_id_id", "logs", ["request_id", "id"])
    op.create_index(
        "ix_chatmessages_conversation_id_created_at",
        "chatmessages",
        ["conversation_id", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_chatmessages_conversation_id_created_at", table_name="chatmessages")
    op.drop_index("ix_logs_request_id_id", table_name="logs")
    op.drop_index("ix_logs_session_id_id", table_name="logs")
    op.drop_constraint("modelconfigs_provider_id_name_key", "modelconfigs", type_="unique")
    # Fails if two providers now hold configs of the same name, as the old rule demands.
    op.create_unique_constraint("modelconfigs_name_key", "modelconfigs", ["name"])
