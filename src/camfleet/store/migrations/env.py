"""Alembic environment: runs on the connection camfleet.store.migrate hands over (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from camfleet.store.schema import metadata

_connection = context.config.attributes.get("connection")
if _connection is None:
    raise RuntimeError("camfleet migrations run through camfleet.store.migrate, which passes a connection")

context.configure(
    connection=_connection,
    target_metadata=metadata,
    render_as_batch=_connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
