"""Alembic migrations of the debflow schema."""
