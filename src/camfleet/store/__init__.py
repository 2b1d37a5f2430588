"""camfleet's database: SQLAlchemy 2 + Alembic, SQLite (WAL) by default, PostgreSQL by URL.

:class:`Store` reads and writes events, activity spans, recording segments, cameras
(applied and staged, passwords encrypted at rest), event snapshots, nodes and API tokens
(hashed).
:class:`StoreWriter` is the single writer path the node feeds from its processes.
"""

from camfleet.store.errors import StoreError
from camfleet.store.records import (
    ActivityRecord,
    CameraRow,
    EventRecord,
    SegmentRecord,
    SnapshotRecord,
    TokenRow,
)
from camfleet.store.store import Store
from camfleet.store.writer import StoreWriter

__all__ = [
    "ActivityRecord",
    "CameraRow",
    "EventRecord",
    "SegmentRecord",
    "SnapshotRecord",
    "Store",
    "StoreError",
    "StoreWriter",
    "TokenRow",
]
