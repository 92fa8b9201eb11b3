"""The first release's schema (the original back-end's only revision, same id).

Revision ID: a2d715381000
Revises:
Create Date: 2025-05-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a2d715381000"
down_revision = None
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    ]


def _creator(table: str) -> sa.Column[object]:
    return sa.Column(
        "creator_id",
        sa.Uuid(),
        sa.ForeignKey("users.id", ondelete="CASCADE", name=f"{table}_creator_id_fkey"),
        nullable=True,
    )


def _index(table: str, *columns: str, unique: bool = False) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns), unique=unique)


def _association(table: str, left: tuple[str, str], right: tuple[str, str]) -> None:
    cols = [
        sa.Column(
            col,
            sa.Uuid(),
            sa.ForeignKey(target, ondelete="CASCADE", name=f"{table}_{col}_fkey"),
            nullable=False,
        )
        for col, target in (left, right)
    ]
    op.create_table(
        table,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        *cols,
        sa.PrimaryKeyConstraint("id", name=f"{table}_pkey"),
    )
    for col in ("id", left[0], right[0]):
        _index(table, col)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("username", sa.String(), nullable=False),
        sa.Column("password", sa.String(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="users_pkey"),
    )
    _index("users", "id")
    _index("users", "username", unique=True)

    op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="projects_pkey"),
    )
    _index("projects", "id")

    op.create_table(
        "teams",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="teams_pkey"),
        sa.UniqueConstraint("name", name="teams_name_key"),
    )
    _index("teams", "id")

    op.create_table(
        "agents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("jwt", sa.String(), nullable=False),
        _creator("agents"),
        sa.Column("input_parameters", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.Column("last_invoked_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="agents_pkey"),
        sa.UniqueConstraint("jwt", name="agents_jwt_key"),
    )
    _index("agents", "id")
    _index("agents", "creator_id")

    op.create_table(
        "agentworkflows",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("flow", sa.JSON(), nullable=False),
        _creator("agentworkflows"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="agentworkflows_pkey"),
    )
    _index("agentworkflows", "id")
    _index("agentworkflows", "creator_id")

    op.create_table(
        "logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.String(), nullable=True),
        _creator("logs"),
        *_timestamps(),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("log_level", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="logs_pkey"),
    )
    for col in ("id", "session_id", "request_id", "agent_id", "creator_id"):
        _index("logs", col)

    op.create_table(
        "files",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        _creator("files"),
        sa.Column("mimetype", sa.String(), nullable=False),
        sa.Column("original_name", sa.String(), nullable=False),
        sa.Column("internal_name", sa.String(), nullable=False),
        sa.Column("internal_id", sa.Uuid(), nullable=False),
        sa.Column("from_agent", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="files_pkey"),
    )
    for col in ("id", "session_id", "request_id", "creator_id", "internal_id"):
        _index("files", col)

    op.create_table(
        "modelconfigs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("system_prompt", sa.String(), nullable=False),
        sa.Column("temperature", sa.Float(), nullable=False),
        sa.Column("credentials", sa.JSON(), nullable=False),
        _creator("modelconfigs"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="modelconfigs_pkey"),
        sa.UniqueConstraint("name", name="modelconfigs_name_key"),
    )
    for col in ("id", "model", "provider", "creator_id"):
        _index("modelconfigs", col)

    _association(
        "user_project_associations", ("user_id", "users.id"), ("project_id", "projects.id")
    )
    _association("user_team_associations", ("user_id", "users.id"), ("team_id", "teams.id"))
    _association(
        "agent_project_associations", ("agent_id", "agents.id"), ("project_id", "projects.id")
    )
    _association(
        "agentflow_project_associations",
        ("flow_id", "agentworkflows.id"),
        ("project_id", "projects.id"),
    )


def downgrade() -> None:
    for table in (
        "agentflow_project_associations",
        "agent_project_associations",
        "user_team_associations",
        "user_project_associations",
        "modelconfigs",
        "files",
        "logs",
        "agentworkflows",
        "agents",
        "teams",
        "projects",
        "users",
    ):
        op.drop_table(table)
