"""The database sink on SQLite and PostgreSQL: a batch delivered again changes nothing (upserts by
event id, segment path, activity (camera, kind, start)); an ended event stays ended; the events
the database has open and the journal does not are closed at their last-seen time."""

from __future__ import annotations

import pytest
from sqlalchemy import insert

from camfleet.events.dbsink import DatabaseSink
from camfleet.store import Store
from camfleet.store import migrate as migrations
from camfleet.store import schema as t
from camfleet.vocabulary import (
    ActivityMessage,
    Event,
    EventMessage,
    MotionSpan,
    OutboxMessage,
    SegmentMessage,
    SegmentRecord,
)

pytestmark = pytest.mark.process  # PostgreSQL runs as a server process

T0 = 1_700_000_000.0


def _batch() -> list[OutboxMessage]:
    ev = Event(id="e1", camera="cam1", label="person", start=T0, top_score=0.6, data={"last_seen": T0 + 1})
    ended = Event(id="e1", camera="cam1", label="person", start=T0, end=T0 + 4, top_score=0.9)
    return [
        EventMessage("start", ev),
        EventMessage("end", ended),
        ActivityMessage(MotionSpan("cam1", "event", T0, T0 + 4)),
        ActivityMessage(MotionSpan("cam1", "motion", T0, T0 + 2)),
        ActivityMessage(MotionSpan("cam1", "motion", T0, T0 + 3)),  # the same span, longer
        SegmentMessage(SegmentRecord("cam1", "cam1/a.mp4", T0, T0 + 6, 1000, 90, 3)),
    ]


def test_redelivery_is_idempotent_and_an_ended_event_stays_ended(store: Store) -> None:
    sink = DatabaseSink(store)
    for _ in range(3):
        sink.write(_batch())
    sink.write(_batch()[:1])  # a late 'start' delivered again cannot reopen the event
    events = store.query_events()
    assert [(e.id, e.end) for e in events] == [("e1", T0 + 4)]
    spans = store.query_activity("cam1", T0 - 1, T0 + 10)
    assert sorted((s.kind, s.start, s.end) for s in spans) == [("event", T0, T0 + 4), ("motion", T0, T0 + 3)]
    segs = store.query_segments(camera="cam1")
    assert [(s.path, s.size) for s in segs] == [("cam1/a.mp4", 1000)]
    assert store.add_segment(SegmentRecord("cam1", "cam1/a.mp4", T0, T0 + 6, 2000)) == segs[0].id


def test_stale_open_events_closed_at_last_seen(store: Store) -> None:
    sink = DatabaseSink(store)
    sink.write([
        EventMessage("start", Event(id="a", camera="c", label="car", start=T0, data={"last_seen": T0 + 5})),
        EventMessage("start", Event(id="b", camera="c", label="car", start=T0 + 1)),
        EventMessage("start", Event(id="kept", camera="c", label="car", start=T0 + 2)),
    ])
    assert sink.close_stale({"kept"}) == 2
    ends = {e.id: e.end for e in store.query_events()}
    assert ends == {"a": T0 + 5, "b": T0 + 1, "kept": None}


def test_migration_0004_merges_rows_an_old_writer_stored_twice(store: Store) -> None:
    migrations.downgrade(store.engine, "0003")
    with store.engine.begin() as conn:
        seg = {"camera": "c", "path": "c/a.mp4", "start": T0, "end": T0 + 6, "size": 1, "frames": 0,
               "keyframes": 0}
        conn.execute(insert(t.segments), [seg, {**seg, "size": 2}])
        span = {"camera": "c", "kind": "motion", "start": T0}
        conn.execute(insert(t.activity), [{**span, "end": T0 + 1}, {**span, "end": T0 + 3}])
    migrations.upgrade(store.engine)
    assert [(s.path, s.size) for s in store.query_segments()] == [("c/a.mp4", 1)]
    assert [(a.start, a.end) for a in store.query_activity("c", T0 - 1, T0 + 9)] == [(T0, T0 + 3)]
