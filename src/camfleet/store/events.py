"""Events and their snapshots: upserts, filtered queries, retention flags, closing lost ends.

A snapshot row is written in the same transaction as the event naming it, so the
two live together here.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import Select, cast

from camfleet.store import schema as t
from camfleet.store.base import StoreBase
from camfleet.store.records import EventRecord, SnapshotRecord


class EventStore(StoreBase):
    """The ``events`` and ``snapshots`` tables."""

    def _upsert_events(self, conn: Connection, items: Sequence[EventRecord]) -> int:
        merged: dict[str, dict[str, Any]] = {}
        for ev in items:
            row = _event_row(ev)
            prev = merged.get(ev.id)
            if prev is not None:
                row["retained"] = row["retained"] or prev["retained"]
            merged[ev.id] = row
        if not merged:
            return 0
        ins = self._insert(t.events)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.events.c.id],
            set_={
                "camera": ins.excluded.camera,
                "label": ins.excluded.label,
                "start": ins.excluded.start,
                # an ended event stays ended: a message delivered again cannot reopen it
                "end": func.coalesce(ins.excluded.end, t.events.c.end),
                "top_score": ins.excluded.top_score,
                "zones": ins.excluded.zones,
                "snapshot": ins.excluded.snapshot,
                "retained": or_(t.events.c.retained, ins.excluded.retained),
                "data": ins.excluded.data,
            },
        )
        conn.execute(stmt, list(merged.values()))
        self._upsert_snapshots(conn, [r for r in merged.values() if r["snapshot"]])
        return len(merged)

    def _upsert_snapshots(self, conn: Connection, event_rows: list[dict[str, Any]]) -> None:
        if not event_rows:
            return
        now = time.time()
        rows = [{"event_id": r["id"], "camera": r["camera"], "path": r["snapshot"], "updated": now}
                for r in event_rows]
        ins = self._insert(t.snapshots)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.snapshots.c.event_id],
            set_={"path": ins.excluded.path, "updated": ins.excluded.updated},
            where=t.snapshots.c.path != ins.excluded.path,
        )
        conn.execute(stmt, rows)

    def snapshots(self, *, camera: str | None = None, after: float | None = None,
                  limit: int = 100) -> list[SnapshotRecord]:
        """Snapshots, newest first; ``after`` (epoch s) keeps those updated since then."""
        query = select(t.snapshots).order_by(t.snapshots.c.updated.desc()).limit(limit)
        if camera is not None:
            query = query.where(t.snapshots.c.camera == camera)
        if after is not None:
            query = query.where(t.snapshots.c.updated >= after)
        with self._tx("reading snapshots") as conn:
            rows = conn.execute(query).all()
        return [SnapshotRecord(r.event_id, r.camera, r.path, r.updated) for r in rows]

    def upsert_event(self, event: EventRecord) -> None:
        """Insert ``event`` or update the stored one with the same id (a set retained flag is kept)."""
        self.upsert_events([event])

    def upsert_events(self, events: Sequence[EventRecord]) -> None:
        """Insert or update ``events`` in one transaction (the last of duplicate ids wins)."""
        with self._tx("writing events", write=True) as conn:
            self._upsert_events(conn, events)

    def get_event(self, event_id: str) -> EventRecord | None:
        """The event with ``event_id`` (None if there is none)."""
        with self._tx("reading an event") as conn:
            row = conn.execute(select(t.events).where(t.events.c.id == event_id)).mappings().first()
        return None if row is None else _event_record(row)

    def _event_filter(
        self,
        camera: str | None,
        label: str | None,
        zone: str | None,
        after: float | None,
        before: float | None,
        min_score: float | None = None,
        reviewed: bool | None = None,
    ) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = []
        if min_score is not None:
            cond.append(t.events.c.top_score >= min_score)
        if reviewed is not None:
            cond.append(t.events.c.reviewed == reviewed)
        if camera is not None:
            cond.append(t.events.c.camera == camera)
        if label is not None:
            cond.append(t.events.c.label == label)
        if after is not None:
            cond.append(t.events.c.start >= after)
        if before is not None:
            cond.append(t.events.c.start < before)
        if zone is not None:
            if self._dialect == "postgresql":
                cond.append(cast(t.events.c.zones, JSONB).contains(cast([zone], JSONB)))
            else:
                each = func.json_each(t.events.c.zones).table_valued("value")
                cond.append(select(literal(1)).select_from(each).where(each.c.value == zone).exists())
        return cond

    def query_events(
        self,
        *,
        camera: str | None = None,
        label: str | None = None,
        zone: str | None = None,
        after: float | None = None,
        before: float | None = None,
        limit: int = 100,
        offset: int = 0,
        min_score: float | None = None,
        reviewed: bool | None = None,
    ) -> list[EventRecord]:
        """Events matching every given filter, newest start first.

        ``after``/``before`` bound the start time (``after <= start < before``, epoch seconds);
        ``zone`` matches events whose zones include it; ``min_score``: top score at least
        this (0..1); ``reviewed``: only events (not) marked reviewed.
        """
        stmt: Select[Any] = (
            select(t.events)
            .where(and_(True, *self._event_filter(camera, label, zone, after, before, min_score, reviewed)))
            .order_by(t.events.c.start.desc(), t.events.c.id.desc())
            .limit(max(0, limit))
            .offset(max(0, offset))
        )
        with self._tx("querying events") as conn:
            return [_event_record(r) for r in conn.execute(stmt).mappings()]

    def count_events(
        self,
        *,
        camera: str | None = None,
        label: str | None = None,
        zone: str | None = None,
        after: float | None = None,
        before: float | None = None,
        min_score: float | None = None,
        reviewed: bool | None = None,
    ) -> int:
        """How many events match the filters of :meth:`query_events`."""
        stmt = select(func.count()).select_from(t.events).where(
            and_(True, *self._event_filter(camera, label, zone, after, before, min_score, reviewed))
        )
        with self._tx("counting events") as conn:
            return int(conn.execute(stmt).scalar_one())

    def set_event_retained(self, event_id: str, retained: bool) -> bool:
        """Mark an event kept (or not) by retention; False if there is no such event."""
        with self._tx("marking an event retained", write=True) as conn:
            res = conn.execute(update(t.events).where(t.events.c.id == event_id).values(retained=retained))
            return bool(res.rowcount)

    def set_events_reviewed(self, event_ids: Sequence[str], reviewed: bool) -> int:
        """Mark events reviewed (or not); returns how many exist among ``event_ids``."""
        if not event_ids:
            return 0
        with self._tx("marking events reviewed", write=True) as conn:
            stmt = update(t.events).where(t.events.c.id.in_(list(event_ids))).values(reviewed=reviewed)
            res = conn.execute(stmt)
            return int(res.rowcount)

    def reviewed_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` are marked reviewed."""
        if not event_ids:
            return set()
        stmt = select(t.events.c.id).where(t.events.c.id.in_(list(event_ids)), t.events.c.reviewed.is_(True))
        with self._tx("reading reviewed flags") as conn:
            return {r[0] for r in conn.execute(stmt)}

    def retained_spans(self, camera: str) -> list[tuple[float, float]]:
        """(start, end) in epoch seconds of the camera's retained events; a running event ends now."""
        now = time.time()
        stmt = (
            select(t.events.c.start, t.events.c.end)
            .where(t.events.c.camera == camera, t.events.c.retained.is_(True))
            .order_by(t.events.c.start)
        )
        with self._tx("reading retained spans") as conn:
            return [(float(s), now if e is None else float(e)) for s, e in conn.execute(stmt)]

    def close_open_events(self, keep: Collection[str] = (), *, camera: str | None = None) -> int:
        """End every open event (``end`` NULL) not in ``keep`` at its last-seen time; returns how many.

        The last-seen time (epoch seconds) is ``data["last_seen"]`` when the pipeline reported it,
        else the event's start. Used at node start for events whose end was lost.
        """
        ev = t.events.c
        cond: list[ColumnElement[bool]] = [ev.end.is_(None)]
        if camera is not None:
            cond.append(ev.camera == camera)
        closed = 0
        with self._tx("closing open events", write=True) as conn:
            for row in conn.execute(select(ev.id, ev.start, ev.data).where(*cond)).all():
                if row.id in keep:
                    continue
                seen = (row.data or {}).get("last_seen")
                start = float(row.start)
                end = max(start, float(seen)) if isinstance(seen, int | float) else start
                closed += conn.execute(
                    update(t.events).where(ev.id == row.id, ev.end.is_(None)).values(end=end)
                ).rowcount
        return closed


def _event_row(ev: EventRecord) -> dict[str, Any]:
    return {
        "id": ev.id, "camera": ev.camera, "label": ev.label, "start": float(ev.start),
        "end": None if ev.end is None else float(ev.end), "top_score": float(ev.top_score),
        "zones": list(ev.zones), "snapshot": ev.snapshot, "retained": bool(ev.retained),
        "data": dict(ev.data),
    }


def _event_record(r: Any) -> EventRecord:
    return EventRecord(
        id=r["id"], camera=r["camera"], label=r["label"], start=r["start"], end=r["end"],
        top_score=r["top_score"], zones=list(r["zones"] or []), snapshot=r["snapshot"],
        retained=bool(r["retained"]), data=dict(r["data"] or {}),
    )
