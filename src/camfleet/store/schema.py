"""The database schema (SQLAlchemy Core tables); migrations/versions must match it.

Times are epoch seconds (float), sizes bytes. JSON columns hold JSON-ready values.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    false,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

events = Table(
    "events",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("camera", String(128), nullable=False),
    Column("label", String(64), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=True),
    Column("top_score", Float, nullable=False, default=0.0),
    Column("zones", JSON, nullable=False),
    Column("snapshot", String(1024), nullable=True),
    Column("retained", Boolean, nullable=False, default=False),
    Column("data", JSON, nullable=False),
    # set by a person reviewing events (the web UI); never written by the pipeline's upserts
    Column("reviewed", Boolean, nullable=False, default=False, server_default=false()),
    Index(None, "camera", "start"),
    Index(None, "reviewed", "start"),
    Index(None, "label", "start"),
    Index(None, "start"),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("event_id", String(64), ForeignKey("events.id", ondelete="CASCADE"), primary_key=True),
    Column("camera", String(128), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("updated", Float, nullable=False),
    Index(None, "camera", "updated"),
)

activity = Table(
    "activity",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("camera", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Index(None, "camera", "start"),
    Index("uq_activity_camera_kind_start", "camera", "kind", "start", unique=True),
)

segments = Table(
    "segments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("camera", String(128), nullable=False),
    Column("path", String(1024), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("frames", Integer, nullable=False, default=0),
    Column("keyframes", Integer, nullable=False, default=0),
    Index(None, "camera", "start"),
    Index(None, "start"),
    Index("uq_segments_path", "path", unique=True),
)

cameras = Table(
    "cameras",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("config", JSON, nullable=False),
    Column("updated", Float, nullable=False),
)

deleted_cameras = Table(
    "deleted_cameras",
    metadata,
    Column("name", String(128), primary_key=True),  # deleted through the API: hidden from the file's set
    Column("updated", Float, nullable=False),
)

staged_cameras = Table(
    "staged_cameras",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("config", JSON(none_as_null=True), nullable=True),  # NULL = a staged deletion
    Column("updated", Float, nullable=False),
)

nodes = Table(
    "nodes",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("address", String(256), nullable=False),
    Column("status", JSON, nullable=False),
    Column("updated", Float, nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("created", Float, nullable=False),
    Column("revoked", Float, nullable=True),
    Index(None, "hash", unique=True),
)
