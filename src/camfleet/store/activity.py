"""Activity spans (motion and event time ranges per camera): idempotent inserts and range queries."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from camfleet.store import schema as t
from camfleet.store.base import StoreBase
from camfleet.store.errors import StoreError
from camfleet.store.records import ActivityRecord


class ActivityStore(StoreBase):
    """The ``activity`` table."""

    def add_activity(self, records: Sequence[ActivityRecord]) -> None:
        """Store motion/event spans (one transaction)."""
        with self._tx("writing activity", write=True) as conn:
            self._add_activity(conn, records)

    def _add_activity(self, conn: Connection, records: Sequence[ActivityRecord]) -> None:
        # idempotent: a span delivered twice (the outbox delivers at least once) is one row,
        # keyed by (camera, kind, start); the later end wins
        merged = {(r.camera, r.kind, float(r.start)): _activity_row(r) for r in records}
        if merged:
            ins = self._insert(t.activity)
            stmt = ins.on_conflict_do_update(
                index_elements=[t.activity.c.camera, t.activity.c.kind, t.activity.c.start],
                set_={"end": ins.excluded.end},
            )
            conn.execute(stmt, list(merged.values()))

    def query_activity(self, camera: str, after: float, before: float) -> list[ActivityRecord]:
        """The camera's spans overlapping ``[after, before)`` (epoch seconds), by start."""
        stmt = (
            select(t.activity)
            .where(t.activity.c.camera == camera, t.activity.c.end > after, t.activity.c.start < before)
            .order_by(t.activity.c.start, t.activity.c.id)
        )
        with self._tx("querying activity") as conn:
            return [
                ActivityRecord(camera=r.camera, kind=r.kind, start=r.start, end=r.end, id=r.id)
                for r in conn.execute(stmt)
            ]


def _activity_row(r: ActivityRecord) -> dict[str, Any]:
    if r.kind not in ("motion", "event"):
        raise StoreError(f"activity kind must be 'motion' or 'event', got {r.kind!r}")
    return {"camera": r.camera, "kind": r.kind, "start": float(r.start), "end": float(r.end)}
