"""The store: events, activity spans, recording segments, cameras, nodes and API tokens.

One :class:`Store` per process. Writes from the camera processes go through
:class:`camfleet.store.writer.StoreWriter` (one writer thread), readers use the
store directly; SQLite in WAL mode lets them run side by side.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Select, cast

from camfleet.ingest.url import mask_text
from camfleet.store import engine as engines
from camfleet.store import migrate as migrations
from camfleet.store import schema as t
from camfleet.store.credentials import SecretBox, open_config, seal_config
from camfleet.store.errors import StoreError
from camfleet.store.records import (
    ActivityRecord,
    CameraRow,
    EventRecord,
    SegmentRecord,
    SnapshotRecord,
    TokenRow,
)

log = logging.getLogger(__name__)

ROLES = ("admin", "viewer")
"""API token roles."""

TOKEN_PREFIX = "cft_"
"""Every clear API token starts with this (so a leaked one is recognisable)."""


def _reason(exc: BaseException) -> str:
    """The driver's message of a database error, first line, credentials masked, no SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    first = lines[0] if lines else type(orig).__name__
    return mask_text(first)


class Store:
    """The camfleet database (SQLite file or PostgreSQL server) behind a small typed API.

    Methods are thread-safe (each one uses its own pooled connection and transaction).
    Times are epoch seconds, sizes bytes.
    """

    def __init__(self, engine: Engine, url_public: str, box: SecretBox) -> None:
        self.engine = engine
        self.url_public = url_public
        self._box = box
        self._dialect = engine.dialect.name

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, url: str, *, secret_key_path: Path | None = None, migrate: bool = True) -> Store:
        """Open (and by default migrate to head) the database at ``url``.

        ``sqlite:///PATH`` (parent directory created; WAL) or ``postgresql://...`` (psycopg 3).
        The camera-password key file defaults to ``<PATH>.key`` next to an SQLite database.
        Raises StoreError, with the URL's password masked, when the database cannot be used.
        """
        parsed = engines.parse_url(url)
        public = engines.public_url(url)
        path = engines.sqlite_path(parsed)
        where = f"database {path}" if path is not None else f"database {public}"
        if secret_key_path is None and path is not None:
            secret_key_path = path.with_name(path.name + ".key")
        engine = engines.create(parsed)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1")).all()
                if path is not None:
                    conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()
            if migrate:
                cls._migrate(engine, where)
        except StoreError:
            engine.dispose()
            raise
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"cannot open {where}: {_reason(exc)}") from None
        except Exception as exc:
            engine.dispose()
            raise StoreError(f"cannot open {where}: {mask_text(str(exc))}") from None
        return cls(engine, public, SecretBox(secret_key_path))

    @staticmethod
    def _migrate(engine: Engine, where: str) -> None:
        current = migrations.current(engine)
        head = migrations.head()
        if current == head:
            return
        if current is not None and not migrations.known(current):
            raise StoreError(
                f"{where} is at schema revision {current!r}, newer than this camfleet knows (head {head!r}): "
                "upgrade camfleet; the database was left untouched"
            )
        migrations.upgrade(engine)
        log.info("store: %s migrated from %s to %s", where, current or "empty", head)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.url_public!r})"

    @contextmanager
    def _tx(self, what: str, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; SQLite write transactions take the write lock up front (BEGIN IMMEDIATE)."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(**{engines.IMMEDIATE: True})
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{what} failed on {self.url_public}: {_reason(exc)}") from exc

    # ------------------------------------------------------------------ events

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
        ins = (sqlite_dialect.insert if self._dialect == "sqlite" else pg_dialect.insert)(t.events)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.events.c.id],
            set_={
                "camera": ins.excluded.camera,
                "label": ins.excluded.label,
                "start": ins.excluded.start,
                "end": ins.excluded.end,
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
        ins = (sqlite_dialect.insert if self._dialect == "sqlite" else pg_dialect.insert)(t.snapshots)
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
    ) -> list[ColumnElement[bool]]:
        cond: list[ColumnElement[bool]] = []
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
    ) -> list[EventRecord]:
        """Events matching every given filter, newest start first.

        ``after``/``before`` bound the start time (``after <= start < before``, epoch seconds);
        ``zone`` matches events whose zones include it.
        """
        stmt: Select[Any] = (
            select(t.events)
            .where(and_(True, *self._event_filter(camera, label, zone, after, before)))
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
    ) -> int:
        """How many events match the filters of :meth:`query_events`."""
        stmt = select(func.count()).select_from(t.events).where(
            and_(True, *self._event_filter(camera, label, zone, after, before))
        )
        with self._tx("counting events") as conn:
            return int(conn.execute(stmt).scalar_one())

    def set_event_retained(self, event_id: str, retained: bool) -> bool:
        """Mark an event kept (or not) by retention; False if there is no such event."""
        with self._tx("marking an event retained", write=True) as conn:
            res = conn.execute(update(t.events).where(t.events.c.id == event_id).values(retained=retained))
            return bool(res.rowcount)

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

    # ------------------------------------------------------------------ activity

    def add_activity(self, records: Sequence[ActivityRecord]) -> None:
        """Store motion/event spans (one transaction)."""
        with self._tx("writing activity", write=True) as conn:
            self._add_activity(conn, records)

    @staticmethod
    def _add_activity(conn: Connection, records: Sequence[ActivityRecord]) -> None:
        rows = [_activity_row(r) for r in records]
        if rows:
            conn.execute(insert(t.activity), rows)

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

    # ------------------------------------------------------------------ segments

    def add_segment(self, seg: SegmentRecord) -> int:
        """Store one recording segment; returns its id (also set on ``seg``)."""
        with self._tx("writing a segment", write=True) as conn:
            res = conn.execute(insert(t.segments).values(**_segment_row(seg)))
            pk = res.inserted_primary_key
            assert pk is not None
            seg.id = int(pk[0])
            return seg.id

    @staticmethod
    def _add_segments(conn: Connection, segs: Sequence[SegmentRecord]) -> None:
        rows = [_segment_row(s) for s in segs]
        if rows:
            conn.execute(insert(t.segments), rows)

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

    # -- read-only helpers of the API (issue 12): bounded pages, an index lookup, a cheap ping

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
        """Whether a segment row has exactly this relative ``path`` (``<camera>/...``)."""
        seg = t.segments.c
        # the camera (the path's first part) narrows the lookup to that camera's rows (an index)
        stmt = select(seg.id).where(seg.camera == path.split("/", 1)[0], seg.path == path).limit(1)
        with self._tx("looking up a segment") as conn:
            return conn.execute(stmt).first() is not None

    def ping(self) -> None:
        """A constant-time round trip to the database (``SELECT 1``); raises :class:`StoreError` if down."""
        with self._tx("pinging the database") as conn:
            conn.execute(text("SELECT 1")).all()

    def segment_totals(self) -> dict[str, tuple[int, int]]:
        """Per camera: (segment count, total bytes)."""
        seg = t.segments.c
        stmt = select(seg.camera, func.count(), func.coalesce(func.sum(seg.size), 0)).group_by(seg.camera)
        with self._tx("summing segments") as conn:
            return {cam: (int(n), int(size)) for cam, n, size in conn.execute(stmt)}

    # ------------------------------------------------------------------ batches (the writer's path)

    def write_batch(
        self,
        events: Sequence[EventRecord] = (),
        activities: Sequence[ActivityRecord] = (),
        segs: Sequence[SegmentRecord] = (),
    ) -> None:
        """Write events (upserted), activity spans and segments in one transaction."""
        with self._tx("writing a batch", write=True) as conn:
            self._upsert_events(conn, events)
            self._add_activity(conn, activities)
            self._add_segments(conn, segs)

    # ------------------------------------------------------------------ cameras

    def applied_cameras(self) -> dict[str, dict[str, Any]]:
        """Applied camera configs by name, source passwords decrypted (internal use only: never log it)."""
        return {row.name: row.config for row in self.camera_rows()}

    def camera_rows(self) -> list[CameraRow]:
        """The applied cameras with their update times, passwords decrypted (internal use only)."""
        with self._tx("reading cameras") as conn:
            rows = conn.execute(select(t.cameras).order_by(t.cameras.c.name)).all()
        return [CameraRow(r.name, open_config(r.config, self._box, r.name), r.updated) for r in rows]

    def set_applied_cameras(self, cameras: dict[str, dict[str, Any]],
                            deleted: Collection[str] = ()) -> None:
        """Replace the applied camera set and the deleted names atomically (passwords encrypted first).

        ``deleted`` names cameras removed through the API, so a camera the
        configuration file also has stays removed after a restart.
        """
        now = time.time()
        rows = [{"name": n, "config": seal_config(c, self._box), "updated": now} for n, c in cameras.items()]
        gone = [{"name": n, "updated": now} for n in sorted(set(deleted) - set(cameras))]
        with self._tx("applying cameras", write=True) as conn:
            conn.execute(delete(t.cameras))
            conn.execute(delete(t.deleted_cameras))
            if rows:
                conn.execute(insert(t.cameras), rows)
            if gone:
                conn.execute(insert(t.deleted_cameras), gone)

    def deleted_cameras(self) -> set[str]:
        """Names of the cameras deleted through the API (see :meth:`set_applied_cameras`)."""
        with self._tx("reading deleted cameras") as conn:
            return {r.name for r in conn.execute(select(t.deleted_cameras.c.name)).all()}

    def stage_camera(self, name: str, config: dict[str, Any] | None) -> None:
        """Stage an edit of camera ``name``: a new config, or None for a deletion."""
        row = {"name": name, "config": None if config is None else seal_config(config, self._box),
               "updated": time.time()}
        ins = (sqlite_dialect.insert if self._dialect == "sqlite" else pg_dialect.insert)(t.staged_cameras)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.staged_cameras.c.name],
            set_={"config": ins.excluded.config, "updated": ins.excluded.updated},
        )
        with self._tx("staging a camera", write=True) as conn:
            conn.execute(stmt, row)

    def staged_cameras(self) -> dict[str, dict[str, Any] | None]:
        """Staged configs by name (passwords decrypted); None marks a staged deletion."""
        with self._tx("reading staged cameras") as conn:
            rows = conn.execute(select(t.staged_cameras).order_by(t.staged_cameras.c.name)).all()
        return {r.name: None if r.config is None else open_config(r.config, self._box, r.name) for r in rows}

    def discard_staged(self) -> None:
        """Drop every staged edit."""
        with self._tx("discarding staged cameras", write=True) as conn:
            conn.execute(delete(t.staged_cameras))

    # ------------------------------------------------------------------ nodes

    def upsert_node(self, name: str, address: str, status: dict[str, Any]) -> None:
        """Record a node's address and latest status (stamped now)."""
        ins = (sqlite_dialect.insert if self._dialect == "sqlite" else pg_dialect.insert)(t.nodes)
        stmt = ins.on_conflict_do_update(
            index_elements=[t.nodes.c.name],
            set_={"address": ins.excluded.address, "status": ins.excluded.status,
                  "updated": ins.excluded.updated},
        )
        with self._tx("writing a node", write=True) as conn:
            conn.execute(stmt, {"name": name, "address": address, "status": status, "updated": time.time()})

    def nodes(self) -> list[dict[str, Any]]:
        """Every node: {name, address, status, updated (epoch seconds)}, by name."""
        with self._tx("reading nodes") as conn:
            rows = conn.execute(select(t.nodes).order_by(t.nodes.c.name)).mappings().all()
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ API tokens

    def create_token(self, name: str, role: Literal["admin", "viewer"]) -> str:
        """A new API token for ``role``; the clear token is returned here once and stored only hashed."""
        if role not in ROLES:
            raise StoreError(f"unknown token role {role!r}: use one of {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._tx("creating a token", write=True) as conn:
            conn.execute(
                insert(t.tokens).values(name=name, role=role, hash=_hash(token), created=time.time())
            )
        return token

    def verify_token(self, token: str) -> TokenRow | None:
        """The token's row if ``token`` is known and not revoked, else None (constant-time compare)."""
        digest = _hash(token)
        with self._tx("verifying a token") as conn:
            row = conn.execute(select(t.tokens).where(t.tokens.c.hash == digest)).first()
        if row is None or not hmac.compare_digest(row.hash, digest) or row.revoked is not None:
            return None
        return _token_row(row)

    def list_tokens(self) -> list[TokenRow]:
        """Every token (active and revoked), without the clear token or its hash."""
        with self._tx("listing tokens") as conn:
            return [_token_row(r) for r in conn.execute(select(t.tokens).order_by(t.tokens.c.id))]

    def revoke_token(self, token_id: int) -> bool:
        """Revoke a token; False if there is no token with that id (revoking twice is fine)."""
        with self._tx("revoking a token", write=True) as conn:
            conn.execute(
                update(t.tokens)
                .where(t.tokens.c.id == token_id, t.tokens.c.revoked.is_(None))
                .values(revoked=time.time())
            )
            return conn.execute(select(t.tokens.c.id).where(t.tokens.c.id == token_id)).first() is not None


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token_row(r: Any) -> TokenRow:
    return TokenRow(id=r.id, name=r.name, role=r.role, created=r.created, revoked=r.revoked)


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


def _activity_row(r: ActivityRecord) -> dict[str, Any]:
    if r.kind not in ("motion", "event"):
        raise StoreError(f"activity kind must be 'motion' or 'event', got {r.kind!r}")
    return {"camera": r.camera, "kind": r.kind, "start": float(r.start), "end": float(r.end)}


def _segment_row(s: SegmentRecord) -> dict[str, Any]:
    return {
        "camera": s.camera, "path": s.path, "start": float(s.start), "end": float(s.end),
        "size": int(s.size), "frames": int(s.frames), "keyframes": int(s.keyframes),
    }
