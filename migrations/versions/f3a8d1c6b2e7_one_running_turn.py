"""At most one running turn per conversation, whichever process runs it.

Revision ID: f3a8d1c6b2e7
Revises: e4b2c9d7a1f5
Create Date: 2026-12-04

Several server processes may hold sockets of one conversation; each runs the turns of
the messages its sockets take. A partial unique index makes ``running`` a slot of the
conversation: a process whose turn would be the second running one is refused by
PostgreSQL itself (no lock is held between statements, and a process that dies holds
nothing but its row, which its peers finish as ``interrupted``). The refused turn waits,
``queued``, until the conversation's running turn ends (``genai_turns``).

Event numbers are the other half of the rule: the process that runs a conversation's turn
numbers its events, and a statement whose events would take numbers another turn's
events have (its process is behind) is refused whole, by ``genai_turn_events_taken()``,
instead of storing its other writes without them.

Rows that already break the rule (two processes ran turns of one conversation at once)
keep the newest running; the others are finished as ``interrupted`` first.
"""

from __future__ import annotations

from alembic import op

revision = "f3a8d1c6b2e7"
down_revision = "e4b2c9d7a1f5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE chatturns AS t
        SET status = 'interrupted', finished_at = now() AT TIME ZONE 'utc', delivered = false
        WHERE t.status = 'running' AND EXISTS (
            SELECT FROM chatturns AS o
            WHERE o.session_id = t.session_id AND o.status = 'running'
                AND (o.created_at, o.request_id) > (t.created_at, t.request_id)
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX chatturns_one_running ON chatturns (session_id) "
        "WHERE status = 'running'"
    )
    op.execute(
        """
        CREATE FUNCTION genai_turn_events_taken() RETURNS boolean
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'turn event numbers are taken by another turn'
                USING ERRCODE = 'unique_violation', CONSTRAINT = 'chatturnevents_numbers';
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION genai_turn_events_taken()")
    op.execute("DROP INDEX chatturns_one_running")
