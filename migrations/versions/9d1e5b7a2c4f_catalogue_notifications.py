"""Notify listeners when a user's agents or flows change.

Revision ID: 9d1e5b7a2c4f
Revises: 7c4e9a1f3d20
Create Date: 2026-11-25

Every committed insert, update or delete of an agent or a flow sends the owner's id on
the ``genai_catalogue`` channel (PostgreSQL folds repeats within one transaction); a
TRUNCATE sends ``*``. Servers listen to keep what they cached of a user's lists only as
long as nothing of that user changed, whoever wrote it.
"""

from __future__ import annotations

from alembic import op

revision = "9d1e5b7a2c4f"
down_revision = "7c4e9a1f3d20"
branch_labels = None
depends_on = None

_TABLES = ("agents", "agentworkflows")


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION genai_catalogue_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('genai_catalogue', '*');
                RETURN NULL;
            END IF;
            IF TG_OP <> 'INSERT' AND OLD.creator_id IS NOT NULL THEN
                PERFORM pg_notify('genai_catalogue', OLD.creator_id::text);
            END IF;
            IF TG_OP <> 'DELETE' AND NEW.creator_id IS NOT NULL THEN
                PERFORM pg_notify('genai_catalogue', NEW.creator_id::text);
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    for table in _TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_catalogue AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION genai_catalogue_changed()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_catalogue_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION genai_catalogue_changed()"
        )


def downgrade() -> None:
    for table in _TABLES:
        op.execute(f"DROP TRIGGER {table}_catalogue_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_catalogue ON {table}")
    op.execute("DROP FUNCTION genai_catalogue_changed()")
