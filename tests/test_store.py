"""Store round-trips on SQLite and on a real PostgreSQL: events, activity, segments, nodes, tokens."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import text

from camfleet.store import (
    ActivityRecord,
    EventRecord,
    SegmentRecord,
    Store,
    StoreError,
)

pytestmark = pytest.mark.process


def _public(i: int, **kw: Any) -> dict[str, Any]:
    """An event in the outbox's JSON form (Event.to_json; epoch seconds)."""
    ev: dict[str, Any] = {
        "id": f"ev{i}", "camera": f"cam{i % 3}", "label": "person" if i % 2 else "car",
        "start": float(1_700_000_000 + i), "end": None, "top_score": 0.5 + i / 100,
        "zones": ["yard"] if i % 4 == 0 else ["door", "yard"] if i % 4 == 1 else [],
        "snapshot": None, "data": {"track_id": i, "best_seq": i * 10},
    }
    ev.update(kw)
    return ev


def test_from_json_reads_the_outbox_form_and_round_trips() -> None:
    ev = EventRecord.from_json(_public(7, end=1_700_000_010.5, snapshot="cam1/ev7.jpg",
                                       data={"track_id": 7, "best_seq": 70, "box": [1, 2, 3, 4]}))
    assert ev.id == "ev7" and ev.camera == "cam1" and ev.label == "person"
    assert ev.start == pytest.approx(1_700_000_007.0)
    assert ev.end == pytest.approx(1_700_000_010.5)
    assert ev.top_score == pytest.approx(0.57)
    assert ev.zones == []
    assert ev.snapshot == "cam1/ev7.jpg"
    assert ev.data == {"track_id": 7, "best_seq": 70, "box": [1, 2, 3, 4]}
    assert not ev.retained
    assert EventRecord.from_json(ev.to_json()) == ev
    running = EventRecord.from_json(_public(1))
    assert running.end is None and running.zones == ["door", "yard"]
    with pytest.raises((KeyError, ValueError)):
        EventRecord.from_json({"id": "x", "camera": "c"})
    with pytest.raises(ValueError):
        EventRecord.from_json(_public(1, zones="yard"))


def test_event_upsert_get_and_retained(store: Store) -> None:
    ev = EventRecord.from_json(_public(1))
    store.upsert_event(ev)
    assert store.get_event("ev1") == ev
    assert store.get_event("nope") is None
    assert store.set_event_retained("ev1", True)
    assert not store.set_event_retained("nope", True)
    # the pipeline's end update keeps the user's retained flag
    ended = EventRecord.from_json(_public(1, end=1_700_000_030.0, top_score=0.99))
    store.upsert_event(ended)
    got = store.get_event("ev1")
    assert got is not None
    assert got.retained and got.end == pytest.approx(1_700_000_030.0) and got.top_score == pytest.approx(0.99)
    [(start, end)] = store.retained_spans("cam1")
    assert start == pytest.approx(1_700_000_001.0) and end == pytest.approx(1_700_000_030.0)
    assert store.retained_spans("cam0") == []
    assert store.set_event_retained("ev1", False)
    assert store.retained_spans("cam1") == []


def test_retained_running_event_spans_to_now(store: Store) -> None:
    store.upsert_event(EventRecord("r1", "camA", "dog", start=100.0, retained=True))
    before = time.time()
    [(start, end)] = store.retained_spans("camA")
    assert start == 100.0 and before <= end <= time.time()


def test_query_filters_order_and_pagination(store: Store) -> None:
    store.upsert_events([EventRecord.from_json(_public(i)) for i in range(40)])
    everything = store.query_events(limit=1000)
    assert [e.id for e in everything] == [f"ev{i}" for i in reversed(range(40))]  # newest start first
    assert store.count_events() == 40

    by_cam = store.query_events(camera="cam1", limit=1000)
    assert {e.id for e in by_cam} == {f"ev{i}" for i in range(40) if i % 3 == 1}
    assert store.count_events(camera="cam1") == len(by_cam)

    people = store.query_events(label="person", limit=1000)
    assert {e.id for e in people} == {f"ev{i}" for i in range(40) if i % 2}

    t0 = 1_700_000_000
    window = store.query_events(after=t0 + 10, before=t0 + 20, limit=1000)
    assert [e.id for e in window] == [f"ev{i}" for i in reversed(range(10, 20))]
    assert store.count_events(after=t0 + 10, before=t0 + 20) == 10

    door = store.query_events(zone="door", limit=1000)
    assert {e.id for e in door} == {f"ev{i}" for i in range(40) if i % 4 == 1}
    yard = store.query_events(zone="yard", limit=1000)
    assert {e.id for e in yard} == {f"ev{i}" for i in range(40) if i % 4 in (0, 1)}
    assert store.query_events(zone="yar") == [] and store.query_events(zone="ard") == []
    assert store.count_events(zone="yard") == 20

    combined = store.query_events(camera="cam0", label="car", zone="yard", after=t0 + 5, limit=1000)
    assert {e.id for e in combined} == {f"ev{i}" for i in range(40) if i % 3 == 0 and i % 2 == 0
                                        and i % 4 in (0, 1) and i >= 5}
    assert store.count_events(camera="cam0", label="car", zone="yard", after=t0 + 5) == len(combined)

    pages = [store.query_events(limit=7, offset=o) for o in range(0, 42, 7)]
    assert [e.id for page in pages for e in page] == [e.id for e in everything]
    assert store.query_events(limit=5, offset=38) == everything[38:]


def test_zone_names_are_matched_exactly(store: Store) -> None:
    odd = ['drive "way"', "100%", "a_b", "ümlaut", "x,y"]
    store.upsert_events([EventRecord(f"z{i}", "c", "car", float(i), zones=[z]) for i, z in enumerate(odd)])
    store.upsert_event(EventRecord("zz", "c", "car", 10.0, zones=["axb", "100"]))
    for i, z in enumerate(odd):
        assert [e.id for e in store.query_events(zone=z)] == [f"z{i}"], z


def test_upsert_events_duplicates_in_one_batch(store: Store) -> None:
    a = EventRecord("d1", "c", "car", 1.0, retained=True)
    b = EventRecord("d1", "c", "car", 1.0, end=2.0, top_score=0.7)
    store.upsert_events([a, b])
    got = store.get_event("d1")
    assert got is not None and got.end == 2.0 and got.top_score == pytest.approx(0.7) and got.retained


def test_activity_round_trip(store: Store) -> None:
    store.add_activity([
        ActivityRecord("c1", "motion", 10.0, 20.0), ActivityRecord("c1", "event", 15.0, 40.0),
        ActivityRecord("c1", "motion", 50.0, 60.0), ActivityRecord("c2", "motion", 10.0, 20.0),
    ])
    got = store.query_activity("c1", 18.0, 55.0)
    assert [(a.kind, a.start, a.end) for a in got] == [("motion", 10.0, 20.0), ("event", 15.0, 40.0),
                                                         ("motion", 50.0, 60.0)]
    assert all(a.id is not None and a.camera == "c1" for a in got)
    assert store.query_activity("c1", 20.0, 50.0) == [got[1]]  # half-open overlap
    assert store.query_activity("c3", 0, 100) == []
    with pytest.raises(StoreError, match="activity kind"):
        store.add_activity([ActivityRecord("c1", "noise", 1.0, 2.0)])  # type: ignore[arg-type]


def test_segments_round_trip(store: Store) -> None:
    ids = [store.add_segment(SegmentRecord(f"cam{c}", f"cam{c}/{s:04d}.mp4", 100.0 + 10 * s, 110.0 + 10 * s,
                                           size=1000 + s, frames=150, keyframes=5))
           for c in (2, 1) for s in range(5)]
    assert len(set(ids)) == 10
    everything = store.query_segments()
    assert [(s.camera, s.start) for s in everything] == sorted((s.camera, s.start) for s in everything)
    assert everything[0] == SegmentRecord("cam1", "cam1/0000.mp4", 100.0, 110.0, 1000, 150, 5, id=ids[5])
    overlap = store.query_segments("cam1", 115.0, 130.0)
    assert [s.path for s in overlap] == ["cam1/0001.mp4", "cam1/0002.mp4"]  # [110,120) and [120,130)
    assert [s.path for s in store.query_segments("cam1", start=140.0)] == ["cam1/0004.mp4"]
    assert [s.path for s in store.query_segments(end=110.0)] == ["cam1/0000.mp4", "cam2/0000.mp4"]
    assert store.segment_totals() == {"cam1": (5, 5010), "cam2": (5, 5010)}
    assert store.delete_segments([ids[0], ids[1], 999_999]) == 2
    assert store.delete_segments([]) == 0
    assert store.segment_totals()["cam2"] == (3, 1002 + 1003 + 1004)
    big = SegmentRecord("cam3", "cam3/big.mp4", 0.0, 1.0, size=5 * 2**40)
    store.add_segment(big)
    assert store.segment_totals()["cam3"] == (1, 5 * 2**40)


def test_nodes_round_trip(store: Store) -> None:
    assert store.nodes() == []
    store.upsert_node("n1", "10.0.0.1:7000", {"cameras": 3, "ok": True})
    store.upsert_node("n0", "10.0.0.2:7000", {})
    store.upsert_node("n1", "10.0.0.9:7000", {"cameras": 4})
    got = store.nodes()
    assert [(n["name"], n["address"], n["status"]) for n in got] == [
        ("n0", "10.0.0.2:7000", {}), ("n1", "10.0.0.9:7000", {"cameras": 4})]
    assert all(abs(n["updated"] - time.time()) < 60 for n in got)


def test_tokens(store: Store) -> None:
    admin = store.create_token("ops", "admin")
    viewer = store.create_token("wall", "viewer")
    assert admin != viewer and admin.startswith("cft_") and len(admin) > 40
    row = store.verify_token(admin)
    assert row is not None and row.name == "ops" and row.role == "admin" and row.active
    assert store.verify_token(viewer).role == "viewer"  # type: ignore[union-attr]
    assert store.verify_token("cft_nope") is None and store.verify_token("") is None
    listed = store.list_tokens()
    assert [(t.name, t.role) for t in listed] == [("ops", "admin"), ("wall", "viewer")]
    assert admin not in repr(listed) and viewer not in repr(listed)
    with store.engine.connect() as conn:
        raw = conn.execute(text("SELECT * FROM tokens")).all()
    assert admin not in repr(raw) and viewer not in repr(raw)
    assert store.revoke_token(row.id)
    assert store.revoke_token(row.id)  # twice is fine
    assert not store.revoke_token(999)
    assert store.verify_token(admin) is None and store.verify_token(viewer) is not None
    assert not store.list_tokens()[0].active
    with pytest.raises(StoreError, match="role"):
        store.create_token("x", "root")  # type: ignore[arg-type]
