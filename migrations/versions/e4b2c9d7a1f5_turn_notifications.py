"""Notify listeners when a chat turn ends.

Revision ID: e4b2c9d7a1f5
Revises: c7a4e2d9b815
Create Date: 2026-12-04

A turn's reply must reach every socket of its conversation, on whichever server process
they are. When a turn's status becomes final, ``genai_turns`` carries
``<process id>:<user id>:<session id>:<request id>`` (ids only); the other processes
read the reply once for the sockets they hold.
"""

from __future__ import annotations

from alembic import op

revision = "e4b2c9d7a1f5"
down_revision = "c7a4e2d9b815"
branch_labels = None
depends_on = None

_FINAL = "('answered', 'failed', 'cancelled', 'interrupted')"


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION genai_turn_finished() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(
                'genai_turns',
                coalesce(NEW.process_id::text, '') || ':' || NEW.user_id::text || ':'
                    || NEW.session_id::text || ':' || NEW.request_id::text
            );
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER chatturns_finished_insert AFTER INSERT ON chatturns "
        f"FOR EACH ROW WHEN (NEW.status IN {_FINAL}) EXECUTE FUNCTION genai_turn_finished()"
    )
    op.execute(
        "CREATE TRIGGER chatturns_finished_update AFTER UPDATE OF status ON chatturns "
        f"FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN {_FINAL}) "
        "EXECUTE FUNCTION genai_turn_finished()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER chatturns_finished_update ON chatturns")
    op.execute("DROP TRIGGER chatturns_finished_insert ON chatturns")
    op.execute("DROP FUNCTION genai_turn_finished()")
