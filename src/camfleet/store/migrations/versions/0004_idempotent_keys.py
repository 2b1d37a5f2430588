"""Idempotent keys for the outbox's at-least-once delivery: unique segment paths and activity spans.

Rows that an earlier writer stored twice are merged first (the row with the lowest id stays;
for activity the longest end is kept), so the unique indexes can be created.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Merge duplicate rows, then add unique indexes on segments.path and activity (camera, kind, start)."""
    op.execute(sa.text(
        'UPDATE activity SET "end" = (SELECT max(a2."end") FROM activity a2 WHERE a2.camera = activity.camera'
        ' AND a2.kind = activity.kind AND a2.start = activity.start)'
    ))
    op.execute(sa.text(
        "DELETE FROM activity WHERE id NOT IN (SELECT min(id) FROM activity GROUP BY camera, kind, start)"
    ))
    op.execute(sa.text("DELETE FROM segments WHERE id NOT IN (SELECT min(id) FROM segments GROUP BY path)"))
    op.create_index("uq_segments_path", "segments", ["path"], unique=True)
    op.create_index("uq_activity_camera_kind_start", "activity", ["camera", "kind", "start"], unique=True)


def downgrade() -> None:
    """Drop the unique indexes."""
    op.drop_index("uq_activity_camera_kind_start", table_name="activity")
    op.drop_index("uq_segments_path", table_name="segments")
