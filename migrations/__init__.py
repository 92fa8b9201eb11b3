"""Alembic migrations of the database schema (run through ``persistence.upgrade_to_head``)."""
