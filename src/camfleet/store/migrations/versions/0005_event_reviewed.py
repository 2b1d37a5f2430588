"""Event review: a ``reviewed`` flag on events (set by a person in the web UI), indexed with start.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add events.reviewed (false for every existing event) and an index on (reviewed, start)."""
    # plain ALTER TABLE, never batch mode: on SQLite a batch copies the table, drops the old one,
    # and that drop cascades (foreign keys are on) to every row of snapshots
    op.add_column("events", sa.Column("reviewed", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(op.f("ix_events_reviewed_start"), "events", ["reviewed", "start"])


def downgrade() -> None:
    """Drop the flag and its index."""
    op.drop_index(op.f("ix_events_reviewed_start"), table_name="events")
    op.drop_column("events", "reviewed")  # ALTER TABLE ... DROP COLUMN (SQLite >= 3.35): no copy
