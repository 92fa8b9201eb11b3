"""The current release's schema: aliases, providers, chats, profiles, MCP and A2A tables.

Existing rows are carried over: agents and flows get generated aliases, flow items are
rewritten to ``{"id", "type"}``, and each owner's distinct ``modelconfigs.provider`` text
becomes a ``modelproviders`` row holding the API key that used to sit in the configs'
credentials.

Revision ID: 2b7f3c1d9e40
Revises: a2d715381000
Create Date: 2025-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "2b7f3c1d9e40"
down_revision = "a2d715381000"
branch_labels = None
depends_on = None

# "<normalised name>_<6 random lowercase letters>", the alias format of the application.
_ALIAS = (
    "lower(replace(name, ' ', '_')) || '_' || "
    "translate(substr(md5(random()::text || id::text), 1, 6), '0123456789', 'ghijklmnop')"
)

_SENDERTYPE = postgresql.ENUM("user", "master_agent", name="sendertype", create_type=False)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
    ]


def _fk(table: str, column: str, target: str) -> sa.Column[object]:
    return sa.Column(
        column,
        sa.Uuid(),
        sa.ForeignKey(target, ondelete="CASCADE", name=f"{table}_{column}_fkey"),
        nullable=True,
    )


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def upgrade() -> None:
    # agents: + alias
    op.add_column("agents", sa.Column("alias", sa.String(), nullable=True))
    op.execute(f"UPDATE agents SET alias = {_ALIAS}")
    op.alter_column("agents", "alias", nullable=False)
    op.create_unique_constraint("agents_alias_key", "agents", ["alias"])

    # agentworkflows: + alias, + is_active, items become {"id", "type"}
    op.add_column("agentworkflows", sa.Column("alias", sa.String(), nullable=True))
    op.add_column("agentworkflows", sa.Column("is_active", sa.Boolean(), nullable=True))
    op.execute(
        f"""
        UPDATE agentworkflows SET
            alias = {_ALIAS},
            is_active = false,
            flow = CASE WHEN json_typeof(flow) = 'array' THEN (
                SELECT coalesce(json_agg(json_build_object(
                    'id', coalesce(item->>'id', item->>'agent_id'),
                    'type', coalesce(item->>'type', 'genai')
                ) ORDER BY n), '[]'::json)
                FROM json_array_elements(flow) WITH ORDINALITY AS items(item, n)
            ) ELSE flow END
        """
    )
    op.alter_column("agentworkflows", "alias", nullable=False)
    op.alter_column("agentworkflows", "is_active", nullable=False)
    op.create_unique_constraint("agentworkflows_alias_key", "agentworkflows", ["alias"])

    # modelproviders, filled from the configs' free-text provider
    op.create_table(
        "modelproviders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("api_key", sa.String(), nullable=True),
        sa.Column("provider_metadata", sa.JSON(), nullable=False),
        _fk("modelproviders", "creator_id", "users.id"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="modelproviders_pkey"),
        sa.UniqueConstraint("creator_id", "name", name="uq_user_item_name"),
    )
    _index("modelproviders", "id")
    _index("modelproviders", "creator_id")
    op.execute(
        """
        INSERT INTO modelproviders (id, name, api_key, provider_metadata, creator_id)
        SELECT DISTINCT ON (creator_id, provider)
            gen_random_uuid(), provider, nullif(credentials->>'api_key', ''),
            '{}'::json, creator_id
        FROM modelconfigs
        ORDER BY creator_id, provider, (credentials->>'api_key' IS NULL), updated_at DESC
        """
    )

    op.add_column("modelconfigs", _fk("modelconfigs", "provider_id", "modelproviders.id"))
    op.add_column("modelconfigs", sa.Column("user_prompt", sa.String(), nullable=True))
    op.add_column(
        "modelconfigs",
        sa.Column("max_last_messages", sa.Integer(), server_default="5", nullable=False),
    )
    op.alter_column("modelconfigs", "max_last_messages", server_default=None)
    op.execute(
        """
        UPDATE modelconfigs c SET
            provider_id = p.id,
            credentials = (c.credentials::jsonb - 'api_key')::json
        FROM modelproviders p
        WHERE p.name = c.provider AND p.creator_id IS NOT DISTINCT FROM c.creator_id
        """
    )
    _index("modelconfigs", "provider_id")
    op.drop_index("ix_modelconfigs_provider", table_name="modelconfigs")
    op.drop_column("modelconfigs", "provider")

    # New tables
    op.create_table(
        "userprofiles",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("last_name", sa.String(), nullable=True),
        _fk("userprofiles", "user_id", "users.id"),
        sa.PrimaryKeyConstraint("id", name="userprofiles_pkey"),
    )
    _index("userprofiles", "id")
    _index("userprofiles", "user_id")
    # Every existing user gets the empty profile registration now creates.
    op.execute("INSERT INTO userprofiles (id, user_id) SELECT gen_random_uuid(), id FROM users")

    op.create_table(
        "chatconversations",
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(), nullable=False),
        *_timestamps(),
        _fk("chatconversations", "creator_id", "users.id"),
        sa.PrimaryKeyConstraint("session_id", name="chatconversations_pkey"),
    )
    _index("chatconversations", "session_id")
    _index("chatconversations", "creator_id")

    _SENDERTYPE.create(op.get_bind(), checkfirst=False)
    op.create_table(
        "chatmessages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("request_id", sa.Uuid(), nullable=True),
        sa.Column("sender_type", _SENDERTYPE, nullable=False),
        sa.Column("content", sa.String(), nullable=False),
        sa.Column("extra_metadata", sa.JSON(), nullable=True),
        *_timestamps(),
        _fk("chatmessages", "conversation_id", "chatconversations.session_id"),
        sa.PrimaryKeyConstraint("id", name="chatmessages_pkey"),
    )
    _index("chatmessages", "id")
    _index("chatmessages", "conversation_id")

    op.create_table(
        "mcpservers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("server_url", sa.String(), nullable=False),
        *_timestamps(),
        _fk("mcpservers", "creator_id", "users.id"),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="mcpservers_pkey"),
        sa.UniqueConstraint("creator_id", "server_url", name="uq_mcp_server_url"),
    )
    _index("mcpservers", "id")
    _index("mcpservers", "creator_id")

    op.create_table(
        "mcptools",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("inputSchema", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=True),
        sa.Column("alias", sa.String(), nullable=True),
        _fk("mcptools", "mcp_server_id", "mcpservers.id"),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="mcptools_pkey"),
    )
    _index("mcptools", "id")
    _index("mcptools", "mcp_server_id")

    op.create_table(
        "a2acards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("alias", sa.String(), nullable=True),
        sa.Column("description", sa.String(), nullable=True),
        sa.Column("server_url", sa.String(), nullable=False),
        sa.Column("card_content", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        *_timestamps(),
        _fk("a2acards", "creator_id", "users.id"),
        sa.PrimaryKeyConstraint("id", name="a2acards_pkey"),
        sa.UniqueConstraint("creator_id", "server_url", name="uq_a2a_card_server_url"),
    )
    _index("a2acards", "id")
    _index("a2acards", "creator_id")


def downgrade() -> None:
    for table in ("a2acards", "mcptools", "mcpservers", "chatmessages", "chatconversations"):
        op.drop_table(table)
    _SENDERTYPE.drop(op.get_bind(), checkfirst=False)
    op.drop_table("userprofiles")

    # modelconfigs: the provider name and its key go back into each config
    op.add_column("modelconfigs", sa.Column("provider", sa.String(), nullable=True))
    op.execute(
        """
        UPDATE modelconfigs c SET
            provider = p.name,
            credentials = CASE WHEN p.api_key IS NULL THEN c.credentials
                ELSE (c.credentials::jsonb || jsonb_build_object('api_key', p.api_key))::json END
        FROM modelproviders p WHERE p.id = c.provider_id
        """
    )
    op.execute("UPDATE modelconfigs SET provider = '' WHERE provider IS NULL")
    op.alter_column("modelconfigs", "provider", nullable=False)
    op.create_index("ix_modelconfigs_provider", "modelconfigs", ["provider"])
    op.drop_index("ix_modelconfigs_provider_id", table_name="modelconfigs")
    op.drop_column("modelconfigs", "provider_id")
    op.drop_column("modelconfigs", "user_prompt")
    op.drop_column("modelconfigs", "max_last_messages")
    op.drop_table("modelproviders")

    op.drop_constraint("agentworkflows_alias_key", "agentworkflows", type_="unique")
    op.execute(
        """
        UPDATE agentworkflows SET flow = CASE WHEN json_typeof(flow) = 'array' THEN (
            SELECT coalesce(json_agg(json_build_object('agent_id', item->>'id') ORDER BY n),
                            '[]'::json)
            FROM json_array_elements(flow) WITH ORDINALITY AS items(item, n)
        ) ELSE flow END
        """
    )
    op.drop_column("agentworkflows", "is_active")
    op.drop_column("agentworkflows", "alias")

    op.drop_constraint("agents_alias_key", "agents", type_="unique")
    op.drop_column("agents", "alias")
