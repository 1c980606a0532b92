"""Alembic revisions of the record store, oldest first (Alembic skips this file)."""
