"""Notify listeners when a user's MCP servers, their tools or A2A cards change.

Revision ID: 4f8a2c6e1b93
Revises: 9d1e5b7a2c4f
Create Date: 2026-12-03

The master agent's tool list (``GET /api/agents/active``) shows them, and it is cached
per user until the user's catalogue changes: the same trigger as for agents and flows
fires for servers and cards (their ``creator_id``), and one for tools sends the owner
of the tool's server (a tool has no owner column of its own).
"""

from __future__ import annotations

from alembic import op

revision = "4f8a2c6e1b93"
down_revision = "9d1e5b7a2c4f"
branch_labels = None
depends_on = None

_OWNED = ("mcpservers", "a2acards")


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION genai_tool_changed() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            owner uuid;
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                PERFORM pg_notify('genai_catalogue', '*');
                RETURN NULL;
            END IF;
            IF TG_OP <> 'INSERT' THEN
                SELECT creator_id INTO owner FROM mcpservers WHERE id = OLD.mcp_server_id;
                IF owner IS NOT NULL THEN
                    PERFORM pg_notify('genai_catalogue', owner::text);
                END IF;
            END IF;
            IF TG_OP <> 'DELETE' THEN
                SELECT creator_id INTO owner FROM mcpservers WHERE id = NEW.mcp_server_id;
                IF owner IS NOT NULL THEN
                    PERFORM pg_notify('genai_catalogue', owner::text);
                END IF;
            END IF;
            RETURN NULL;
        END
        $$
        """
    )
    for table in _OWNED:
        op.execute(
            f"CREATE TRIGGER {table}_catalogue AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION genai_catalogue_changed()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_catalogue_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION genai_catalogue_changed()"
        )
    op.execute(
        "CREATE TRIGGER mcptools_catalogue AFTER INSERT OR UPDATE OR DELETE ON mcptools "
        "FOR EACH ROW EXECUTE FUNCTION genai_tool_changed()"
    )
    op.execute(
        "CREATE TRIGGER mcptools_catalogue_truncate AFTER TRUNCATE ON mcptools "
        "FOR EACH STATEMENT EXECUTE FUNCTION genai_tool_changed()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER mcptools_catalogue_truncate ON mcptools")
    op.execute("DROP TRIGGER mcptools_catalogue ON mcptools")
    for table in _OWNED:
        op.execute(f"DROP TRIGGER {table}_catalogue_truncate ON {table}")
        op.execute(f"DROP TRIGGER {table}_catalogue ON {table}")
    op.execute("DROP FUNCTION genai_tool_changed()")
