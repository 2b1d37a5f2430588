"""The coordinators' tables: fleet cameras (applied and staged), nodes, assignments, placement history.

Times are epoch seconds; JSON columns hold plain mappings (camera settings as
under ``cameras.<name>`` in a node configuration, placement hints, agent records).
"""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, Column, Float, Integer, String, Table, Text

from .schema import metadata

__all__ = ["assignments", "cameras", "meta", "nodes", "placements", "staged"]

cameras = Table(
    "fleet_cameras",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("settings", JSON, nullable=False),
    Column("placement", JSON, nullable=False),
    Column("updated_at", Float, nullable=False),
)
"""The fleet's applied cameras: what the scheduler places."""

staged = Table(
    "fleet_staged",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("settings", JSON, nullable=True),  # NULL: the camera's removal is staged
    Column("placement", JSON, nullable=True),
    Column("staged_at", Float, nullable=False),
)
"""Edits waiting for the next apply (one row per camera)."""

nodes = Table(
    "fleet_nodes",
    metadata,
    Column("node_id", String(128), primary_key=True),
    Column("record", JSON, nullable=True),
    Column("state", String(32), nullable=False, default="registered"),
    Column("cordoned", Boolean, nullable=False, default=False),
    Column("draining", Boolean, nullable=False, default=False),
    Column("status", JSON, nullable=True),
    Column("status_at", Float, nullable=True),
    Column("applied", JSON, nullable=True),
    Column("updated_at", Float, nullable=False),
)
"""Every node seen: its registration, member state, scheduling flags, latest status and applied report."""

assignments = Table(
    "fleet_assignments",
    metadata,
    Column("camera", String(128), primary_key=True),
    Column("node", String(128), nullable=False),
    Column("token", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)
"""Where each camera runs and its fencing token (the desired revision that placed it there)."""

placements = Table(
    "fleet_placements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("camera", String(128), nullable=False, index=True),
    Column("source", String(128), nullable=True),
    Column("target", String(128), nullable=True),
    Column("token", Integer, nullable=False),
    Column("term", Integer, nullable=False),
    Column("reason", Text, nullable=False),
)
"""Placement history: who moved where, why, when (append-only)."""

meta = Table(
    "fleet_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)
"""Counters: ``revision`` (the highest desired revision a leader decided), ``generation`` (applies)."""
