"""Snapshots: one row per event with a snapshot (its best frame's JPEG).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the snapshots table and fill it from the events that already have one."""
    op.create_table(
        "snapshots",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("camera", sa.String(length=128), nullable=False),
        sa.Column("path", sa.String(length=1024), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_snapshots_event_id_events"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_snapshots")),
    )
    op.create_index("ix_snapshots_camera_updated", "snapshots", ["camera", "updated"])
    op.execute(
        'INSERT INTO snapshots (event_id, camera, path, updated) '
        'SELECT id, camera, snapshot, COALESCE("end", start) FROM events WHERE snapshot IS NOT NULL'
    )


def downgrade() -> None:
    """Drop the snapshots table."""
    op.drop_index("ix_snapshots_camera_updated", table_name="snapshots")
    op.drop_table("snapshots")
