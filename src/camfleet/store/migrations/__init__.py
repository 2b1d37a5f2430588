"""Alembic migrations of the camfleet store (run programmatically by camfleet.store.migrate)."""
