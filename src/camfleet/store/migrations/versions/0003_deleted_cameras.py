"""Deleted cameras: names removed through the API, kept so the file's copy stays removed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the deleted_cameras table."""
    op.create_table(
        "deleted_cameras",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("updated", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_deleted_cameras")),
    )


def downgrade() -> None:
    """Drop the deleted_cameras table."""
    op.drop_table("deleted_cameras")
