"""Recording segments: idempotent inserts (by path), range queries, deletion and per-camera totals."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, select, text

from camfleet.store import schema as t
from camfleet.store.base import StoreBase
from camfleet.store.records import SegmentRecord


class SegmentStore(StoreBase):
    """The ``segments`` table."""

    def add_segment(self, seg: SegmentRecord) -> int:
        """Store one recording segment; returns its id (also set on ``seg``)."""
        with self._tx("writing a segment", write=True) as conn:
            self._add_segments(conn, [seg])
            pk = conn.execute(select(t.segments.c.id).where(t.segments.c.path == seg.path)).scalar_one()
            seg.id = int(pk)
            return seg.id

    def _add_segments(self, conn: Connection, segs: Sequence[SegmentRecord]) -> None:
        # idempotent by path (unique): a segment delivered twice is one row, the later values win
        merged = {s.path: _segment_row(s) for s in segs}
        if merged:
            ins = self._insert(t.segments)
            stmt = ins.on_conflict_do_update(
                index_elements=[t.segments.c.path],
                set_={c: ins.excluded[c] for c in ("camera", "start", "end", "size", "frames", "keyframes")},
            )
            conn.execute(stmt, list(merged.values()))

    # -- read-only helpers of the API: bounded pages, an index lookup, a cheap ping

    def segments_page(
        self, camera: str | None = None, start: float | None = None, end: float | None = None,
        *, limit: int, offset: int = 0,
    ) -> list[SegmentRecord]:
        """At most ``limit`` segments of :meth:`query_segments`, skipping the first ``offset``."""
        seg = t.segments.c
        stmt = select(t.segments).order_by(seg.camera, seg.start, seg.id).limit(limit).offset(offset)
        if camera is not None:
            stmt = stmt.where(seg.camera == camera)
        if start is not None:
            stmt = stmt.where(seg.end > start)
        if end is not None:
            stmt = stmt.where(seg.start < end)
        with self._tx("querying segments") as conn:
            return [
                SegmentRecord(camera=r.camera, path=r.path, start=r.start, end=r.end, size=int(r.size),
                              frames=r.frames, keyframes=r.keyframes, id=r.id)
                for r in conn.execute(stmt)
            ]

    def segment_indexed(self, path: str) -> bool:
        """Whether a segment row has exactly this relative ``path`` (``<camera>/...``; unique, indexed)."""
        stmt = select(t.segments.c.id).where(t.segments.c.path == path).limit(1)
        with self._tx("looking up a segment") as conn:
            return conn.execute(stmt).first() is not None

    def ping(self) -> None:
        """A constant-time round trip to the database (``SELECT 1``); raises :class:`StoreError` if down."""
        with self._tx("pinging the database") as conn:
            conn.execute(text("SELECT 1")).all()

    def query_segments(
        self, camera: str | None = None, start: float | None = None, end: float | None = None
    ) -> list[SegmentRecord]:
        """Segments overlapping ``[start, end)`` (epoch seconds; open ends unbounded), by (camera, start)."""
        stmt = select(t.segments).order_by(t.segments.c.camera, t.segments.c.start, t.segments.c.id)
        if camera is not None:
            stmt = stmt.where(t.segments.c.camera == camera)
        if start is not None:
            stmt = stmt.where(t.segments.c.end > start)
        if end is not None:
            stmt = stmt.where(t.segments.c.start < end)
        with self._tx("querying segments") as conn:
            return [
                SegmentRecord(
                    camera=r.camera, path=r.path, start=r.start, end=r.end, size=int(r.size),
                    frames=r.frames, keyframes=r.keyframes, id=r.id,
                )
                for r in conn.execute(stmt)
            ]

    def delete_segments(self, ids: Sequence[int]) -> int:
        """Delete segments by id; returns how many were deleted."""
        total = 0
        with self._tx("deleting segments", write=True) as conn:
            for i in range(0, len(ids), 500):
                chunk = [int(x) for x in ids[i : i + 500]]
                total += conn.execute(delete(t.segments).where(t.segments.c.id.in_(chunk))).rowcount
        return total

    def segment_totals(self) -> dict[str, tuple[int, int]]:
        """Per camera: (segment count, total bytes)."""
        seg = t.segments.c
        stmt = select(seg.camera, func.count(), func.coalesce(func.sum(seg.size), 0)).group_by(seg.camera)
        with self._tx("summing segments") as conn:
            return {cam: (int(n), int(size)) for cam, n, size in conn.execute(stmt)}


def _segment_row(s: SegmentRecord) -> dict[str, Any]:
    return {
        "camera": s.camera, "path": s.path, "start": float(s.start), "end": float(s.end),
        "size": int(s.size), "frames": int(s.frames), "keyframes": int(s.keyframes),
    }
