"""The fleet's events in the central database: what the agents' outboxes sent, kept once each.

Tables (on :data:`camfleet.fleetstore.schema.metadata`):

* ``fleet_events``: one row per object event (by its id, unique fleet-wide): its latest
  state, the node that sent it, the fencing token it carried, the journal sequence of that
  state (``seq``) and the stream's time of publication (``published_at``, epoch seconds);
* ``fleet_event_records``: activity spans and recording segments, by ``(kind, key)``
  (:func:`camfleet.vocabulary.message_key`), with the same bookkeeping;
* ``fleet_events_rejected``: every message refused as live, by ``(node, seq)``: a stale
  fencing token (``reason`` ``stale-token``, with the camera's token then in
  ``current_token``) or a message that does not decode (``malformed``).

Rejected messages go to their own table rather than a flag on the live rows: no query of
the live tables can show one by forgetting a filter, a stale node can never overwrite the
live state of an event (same id) with its own, and what it sent stays there for an audit.

Writes are idempotent upserts: a state replaces the stored one unless the stored one came
from the same node with a journal sequence at least as high, so a message delivered twice
or late (a redelivery after a lost acknowledgement) changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Engine,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from camfleet.vocabulary import EventMessage, OutboxMessage, SegmentMessage, encode, message_key

from .schema import metadata

__all__ = [
    "EventPage",
    "Incoming",
    "get_event",
    "page_events",
    "StoreCounts",
    "create_events_tables",
    "events_table",
    "query_events",
    "query_rejected",
    "records_table",
    "rejected_count",
    "rejected_table",
    "store_batch",
]

events_table = Table(
    "fleet_events", metadata,
    Column("id", String(128), primary_key=True),
    Column("node", String(128), nullable=False),
    Column("camera", String(255), nullable=False),
    Column("label", String(255), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=True),
    Column("change", String(16), nullable=False),
    Column("token", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Column("published_at", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("fleet_events_camera_start", "camera", "start"),
    Index("fleet_events_label_start", "label", "start"),
    Index("fleet_events_start", "start"),
)

records_table = Table(
    "fleet_event_records", metadata,
    Column("kind", String(16), primary_key=True),
    Column("key", String(1024), primary_key=True),
    Column("node", String(128), nullable=False),
    Column("camera", String(255), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("token", BigInteger, nullable=True),
    Column("seq", BigInteger, nullable=False),
    Column("published_at", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("fleet_event_records_camera_start", "camera", "start"),
)

rejected_table = Table(
    "fleet_events_rejected", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("node", String(128), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("key", String(1024), nullable=False),
    Column("camera", String(255), nullable=False),
    Column("token", BigInteger, nullable=True),
    Column("current_token", BigInteger, nullable=True),
    Column("reason", String(64), nullable=False),
    Column("published_at", Float, nullable=False),
    Column("stored_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    UniqueConstraint("node", "seq", name="fleet_events_rejected_node_seq"),
    Index("fleet_events_rejected_camera", "camera", "published_at"),
)


def create_events_tables(engine: Engine) -> None:
    """Create the three tables (and indexes) when missing; idempotent."""
    metadata.create_all(engine, tables=[events_table, records_table, rejected_table])


@dataclass(frozen=True)
class Incoming:
    """One message of the stream as the consumer read it.

    ``node`` and ``seq`` from its subject and message id; ``message`` None when the body did
    not decode (then ``raw`` keeps it and ``reason`` says why); ``token`` from its header;
    ``published_at`` the stream's time (epoch s); ``reason`` empty to store it live, else
    why it is rejected (``current_token``: the camera's token that made it stale).
    """

    node: str
    seq: int
    camera: str
    message: OutboxMessage | None
    token: int | None
    published_at: float
    raw: str = ""
    reason: str = ""
    current_token: int | None = None


@dataclass
class StoreCounts:
    """What one :func:`store_batch` did: ``live`` states written (or already there), ``rejected``."""

    live: int = 0
    rejected: int = 0


def _insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT with ON CONFLICT (PostgreSQL or SQLite)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _newer(rows: dict[Any, dict[str, Any]], key: Any, row: dict[str, Any]) -> None:
    """Keep ``row`` for ``key`` unless one from the same node with a higher seq is kept.

    One row per key: PostgreSQL refuses to update a row twice in one statement.
    """
    old = rows.get(key)
    if old is not None and old["node"] == row["node"] and old["seq"] >= row["seq"]:
        return
    rows[key] = row


def store_batch(engine: Engine, batch: Sequence[Incoming]) -> StoreCounts:
    """Write ``batch`` in one transaction (idempotent; see the module); returns the counts."""
    now = time.time()
    events: dict[Any, dict[str, Any]] = {}
    records: dict[Any, dict[str, Any]] = {}
    rejected: list[dict[str, Any]] = []
    counts = StoreCounts()
    for item in batch:
        m = item.message
        if item.reason or m is None:
            rejected.append({
                "node": item.node, "seq": item.seq, "camera": item.camera,
                "kind": _kind(m), "key": message_key(m) if m is not None else "",
                "token": item.token, "current_token": item.current_token,
                "reason": item.reason or "malformed", "published_at": item.published_at, "stored_at": now,
                "body": encode(m) if m is not None else item.raw[:65536]})
            counts.rejected += 1
            continue
        counts.live += 1
        base = {"node": item.node, "token": item.token, "seq": item.seq,
                "published_at": item.published_at, "stored_at": now}
        if isinstance(m, EventMessage):
            ev = m.event
            _newer(events, ev.id, {**base, "id": ev.id, "camera": ev.camera, "label": ev.label,
                                   "start": ev.start, "end": ev.end, "change": m.type,
                                   "body": json.dumps(ev.to_json(), separators=(",", ":"))})
        elif isinstance(m, SegmentMessage):
            s = m.segment
            _newer(records, ("segment", s.path), {
                **base, "kind": "segment", "key": s.path, "camera": s.camera, "start": s.start,
                "end": s.end, "body": json.dumps(s.to_json(), separators=(",", ":"))})
        else:
            sp = m.span
            _newer(records, ("activity", message_key(m)), {
                **base, "kind": "activity", "key": message_key(m), "camera": sp.camera, "start": sp.start,
                "end": sp.end, "body": json.dumps(sp.to_json(), separators=(",", ":"))})
    with engine.begin() as conn:
        if events:
            _upsert(conn, events_table, ["id"], list(events.values()))
        if records:
            _upsert(conn, records_table, ["kind", "key"], list(records.values()))
        if rejected:
            conn.execute(_insert(conn, rejected_table).values(rejected).on_conflict_do_nothing(
                index_elements=["node", "seq"]))
    return counts


def _upsert(conn: Connection, table: Table, keys: list[str], rows: list[dict[str, Any]]) -> None:
    stmt = _insert(conn, table).values(rows)
    excluded = stmt.excluded
    update = {c.name: excluded[c.name] for c in table.columns if c.name not in keys}
    # a state replaces the stored one unless that came later from the same node (a late redelivery)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update,
                                      where=~and_(table.c.node == excluded.node, table.c.seq >= excluded.seq))
    conn.execute(stmt)


def _kind(m: OutboxMessage | None) -> str:
    if m is None:
        return "?"
    if isinstance(m, EventMessage):
        return "event"
    return "segment" if isinstance(m, SegmentMessage) else "activity"


# ---------------------------------------------------------------------- queries


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest start first: ``items`` and the ``cursor`` of the next page (None: last)."""

    items: list[dict[str, Any]]
    cursor: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)


def _encode_cursor(start: float, event_id: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([start, event_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        start, event_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(start, bool) or not isinstance(start, int | float) or not isinstance(event_id, str):
            raise ValueError
        return float(start), event_id
    except (ValueError, TypeError, binascii.Error):
        raise ValueError("cursor: not a cursor this API returned (pass back next_cursor as is)") from None


def _row_event(row: Any) -> dict[str, Any]:
    body = json.loads(row.body)
    # the REST shape of camfleet.vocabulary.Event.public(): the snapshot's path stays private
    out: dict[str, Any] = {
        "id": row.id, "camera": row.camera, "label": row.label, "start": row.start, "end": row.end,
        "top_score": body.get("top_score", 0.0), "zones": body.get("zones", []),
        "has_snapshot": body.get("snapshot") is not None, "retained": bool(body.get("retained", False)),
        "data": body.get("data", {}),
        "node": row.node, "token": row.token, "published_at": row.published_at,
    }
    return out


def query_events(engine: Engine, *, camera: str | None = None, label: str | None = None,
                 node: str | None = None, after: float | None = None, before: float | None = None,
                 limit: int = 100, cursor: str | None = None) -> EventPage:
    """Live events, newest start first, filtered and paged.

    ``camera``/``label``/``node`` match exactly; ``after``/``before`` bound the event's start
    (epoch seconds, ``after <= start < before``); ``limit`` 1-1000 per page; ``cursor`` the
    previous page's. Raises ValueError naming the bad parameter.
    """
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit: {limit} is not between 1 and 1000")
    if after is not None and before is not None and before < after:
        raise ValueError(f"before ({before}) is earlier than after ({after})")
    t = events_table
    q = select(t)
    filters: dict[str, Any] = {}
    for name, col, value in (("camera", t.c.camera, camera), ("label", t.c.label, label),
                             ("node", t.c.node, node)):
        if value is not None:
            q = q.where(col == value)
            filters[name] = value
    if after is not None:
        q = q.where(t.c.start >= after)
        filters["after"] = after
    if before is not None:
        q = q.where(t.c.start < before)
        filters["before"] = before
    if cursor is not None:
        c_start, c_id = _decode_cursor(cursor)
        q = q.where(or_(t.c.start < c_start, and_(t.c.start == c_start, t.c.id < c_id)))
    q = q.order_by(t.c.start.desc(), t.c.id.desc()).limit(limit + 1)
    with engine.connect() as conn:
        rows = list(conn.execute(q))
    items = [_row_event(r) for r in rows[:limit]]
    next_cursor = _encode_cursor(rows[limit - 1].start, rows[limit - 1].id) if len(rows) > limit else None
    return EventPage(items, next_cursor, filters)


def page_events(engine: Engine, *, camera: str | None = None, label: str | None = None,
                zone: str | None = None, node: str | None = None, after: float | None = None,
                before: float | None = None, min_score: float | None = None, limit: int = 50,
                offset: int = 0, where: ColumnElement[bool] | None = None
                ) -> tuple[list[dict[str, Any]], int]:
    """Live events newest first as (one page, how many match): the node API's filters and offset paging.

    ``camera``/``label``/``node`` match exactly and ``after <= start < before`` (epoch seconds) in
    the database; ``zone`` (one of the event's zones) and ``min_score`` (top score at least, 0..1)
    are read from each matching row's body, so they scan the rows the other filters leave.
    ``where``: one more condition on the rows (e.g. :func:`camfleet.fleetstore.flags.reviewed_filter`).
    """
    t = events_table
    q = select(t.c.id, t.c.node, t.c.camera, t.c.label, t.c.start, t.c.end, t.c.token, t.c.published_at,
               t.c.body)
    count = select(func.count()).select_from(t)
    for col, value in ((t.c.camera, camera), (t.c.label, label), (t.c.node, node)):
        if value is not None:
            q, count = q.where(col == value), count.where(col == value)
    if after is not None:
        q, count = q.where(t.c.start >= after), count.where(t.c.start >= after)
    if before is not None:
        q, count = q.where(t.c.start < before), count.where(t.c.start < before)
    if where is not None:
        q, count = q.where(where), count.where(where)
    q = q.order_by(t.c.start.desc(), t.c.id.desc())
    with engine.connect() as conn:
        if zone is None and min_score is None:
            total = int(conn.execute(count).scalar_one())
            rows = list(conn.execute(q.limit(limit).offset(offset)))
            return [_row_event(r) for r in rows], total
        matched = [e for e in (_row_event(r) for r in conn.execute(q))
                   if (zone is None or zone in e["zones"])
                   and (min_score is None or float(e["top_score"]) >= min_score)]
    return matched[offset:offset + limit], len(matched)


def get_event(engine: Engine, event_id: str) -> dict[str, Any] | None:
    """The live event ``event_id`` in the REST shape (plus ``node``, ``token``, ``published_at``), or None."""
    with engine.connect() as conn:
        row = conn.execute(select(events_table).where(events_table.c.id == event_id)).first()
    return _row_event(row) if row is not None else None


def query_rejected(engine: Engine, *, camera: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest rejected messages (``camera`` exactly when given), at most ``limit`` (1-1000)."""
    if not 1 <= limit <= 1000:
        raise ValueError(f"limit: {limit} is not between 1 and 1000")
    t = rejected_table
    q = select(t.c.node, t.c.seq, t.c.kind, t.c.key, t.c.camera, t.c.token, t.c.current_token, t.c.reason,
               t.c.published_at, t.c.stored_at)
    if camera is not None:
        q = q.where(t.c.camera == camera)
    q = q.order_by(t.c.published_at.desc(), t.c.id.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def rejected_count(engine: Engine, *, reason: str | None = None) -> int:
    """How many messages were rejected (with ``reason`` only, when given)."""
    q = select(func.count()).select_from(rejected_table)
    if reason is not None:
        q = q.where(rejected_table.c.reason == reason)
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())
