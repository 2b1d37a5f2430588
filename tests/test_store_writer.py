"""The single writer path (StoreWriter) on SQLite and PostgreSQL: 32 cameras of concurrent producers
while readers query, bad messages, refused rows, a foreign lock holder, stop."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from camfleet.store import Store, StoreWriter
from camfleet.vocabulary import SegmentMessage, SegmentRecord

pytestmark = pytest.mark.process

CAMERAS = 32
PRODUCERS = 8
EVENTS_PER_CAMERA = 60
T0 = 1_700_000_000


def _event(cam: int, n: int, end: bool = False, score: float = 0.5) -> dict[str, Any]:
    """An event in the outbox's JSON form (camfleet.vocabulary.Event.to_json; epoch seconds)."""
    start = float(T0 + n)
    return {
        "id": f"c{cam:02d}-e{n:04d}", "camera": f"cam{cam:02d}", "label": ("person", "car", "dog")[n % 3],
        "start": start, "end": start + 2 if end else None, "top_score": score,
        "zones": ["yard"] if n % 2 else [], "snapshot": None, "data": {"track_id": n, "best_seq": n},
    }


def _produce(writer: StoreWriter, cams: list[int]) -> None:
    for n in range(EVENTS_PER_CAMERA):
        for cam in cams:
            writer.submit({"kind": "event", "type": "start", "event": _event(cam, n)})
            writer.submit({"kind": "activity", "span": {"camera": f"cam{cam:02d}", "kind": "motion",
                                                        "start": T0 + n, "end": T0 + n + 1.5}})
        for cam in cams:
            writer.submit({"kind": "event", "type": "update", "event": _event(cam, n, score=0.8)})
            writer.submit({"kind": "event", "type": "end", "event": _event(cam, n, end=True, score=0.9)})
            if n % 6 == 0:
                writer.submit({"kind": "segment", "segment": {
                    "camera": f"cam{cam:02d}", "path": f"cam{cam:02d}/{n:05d}.mp4", "start": T0 + n,
                    "end": T0 + n + 6, "size": 1_000_000 + n, "frames": 90, "keyframes": 3}})


def test_32_cameras_concurrent_writers_and_readers(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    writer = StoreWriter(store, max_batch=500, max_delay_s=0.02)
    writer.start()
    done = threading.Event()
    failures: list[BaseException] = []
    reads = [0]

    def reader(k: int) -> None:
        i = 0
        try:
            while not done.is_set():
                cam = f"cam{(i * 7 + k) % CAMERAS:02d}"
                store.query_events(camera=cam, limit=20)
                store.query_events(zone="yard", limit=20)
                store.count_events(label="car")
                store.query_segments(cam)
                store.query_activity(cam, T0, T0 + 30)
                i += 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        reads[0] += i

    def api_writer() -> None:  # a second writer next to StoreWriter: the API marking events kept
        try:
            n = 0
            while not done.is_set():
                store.set_event_retained(f"c{n % CAMERAS:02d}-e0000", True)
                n += 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    producers = [threading.Thread(target=_produce, args=(writer, list(range(p, CAMERAS, PRODUCERS))))
                 for p in range(PRODUCERS)]
    others = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    others.append(threading.Thread(target=api_writer))
    for t in others + producers:
        t.start()
    for t in producers:
        t.join(60)
    assert writer.flush(60), writer.stats
    done.set()
    for t in others:
        t.join(30)
    writer.stop()

    assert not failures, failures
    assert reads[0] > 0
    stats = writer.stats
    n_events = CAMERAS * EVENTS_PER_CAMERA
    n_segments = CAMERAS * len(range(0, EVENTS_PER_CAMERA, 6))
    assert stats["errors"] == 0 and stats["dropped"] == 0 and stats["queue"] == 0
    assert stats["written"] == n_events * 4 + n_segments
    assert stats["batches"] < stats["written"] / 5  # batched, not one transaction per message
    assert store.count_events() == n_events
    assert store.count_events(zone="yard") == n_events // 2
    for cam in range(CAMERAS):
        evs = store.query_events(camera=f"cam{cam:02d}", limit=1000)
        assert len(evs) == EVENTS_PER_CAMERA
        assert all(e.end == pytest.approx(e.start + 2) and e.top_score == pytest.approx(0.9) for e in evs)
        assert len(store.query_activity(f"cam{cam:02d}", 0, 2e9)) == EVENTS_PER_CAMERA
    assert store.segment_totals()[f"cam{CAMERAS - 1:02d}"][0] == n_segments // CAMERAS
    assert sum(store.get_event(f"c{c:02d}-e0000").retained for c in range(CAMERAS)) >= 1  # type: ignore[union-attr]
    assert "locked" not in caplog.text


def test_bad_messages_are_logged_and_dropped(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    writer = StoreWriter(store)
    writer.start()
    try:
        bad: list[Any] = [
            {"kind": "event", "type": "start"},  # no event
            {"kind": "event", "type": "begin", "event": _event(1, 1)},
            {"kind": "event", "type": "start", "event": {**_event(1, 2), "start": "soon"}},
            {"kind": "event", "type": "start", "event": {**_event(1, 3), "zones": "yard"}},
            {"kind": "activity", "span": {"camera": "c", "kind": "noise", "start": 1, "end": 2}},
            {"kind": "activity", "span": {"camera": "c", "kind": "motion", "start": 5, "end": 2}},
            {"kind": "segment", "segment": {"camera": "c", "path": "p", "start": 1, "end": 2, "size": 3,
                                            "colour": "red"}},
            {"kind": "segment"},
            {"kind": "teleport"},
            ["not", "a", "dict"],
        ]
        for m in bad:
            writer.submit(m)
        writer.submit({"kind": "event", "type": "start", "event": _event(1, 9)})
        assert writer.flush(10)
        assert writer.stats["dropped"] == len(bad) and writer.stats["written"] == 1
        assert store.get_event("c01-e0009") is not None
        assert "'teleport'" in caplog.text and "'segment'" in caplog.text and "'activity'" in caplog.text
    finally:
        writer.stop()


def test_row_the_database_refuses_is_dropped_and_logged_rest_kept(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    writer = StoreWriter(store, max_delay_s=0.2)
    writer.start()
    try:
        writer.submit({"kind": "event", "type": "start", "event": _event(2, 1)})
        # SQLite refuses the NaN (stored as NULL in a NOT NULL column), PostgreSQL the over-long path
        # (typed, so no JSON validation stands between it and the database)
        refused = SegmentRecord(camera="c", path="x" * 2000, start=float("nan"), end=2.0, size=1)
        writer.submit(SegmentMessage(refused))
        writer.submit({"kind": "event", "type": "start", "event": _event(2, 2)})
        assert writer.flush(20)
        stats = writer.stats
        assert stats["dropped"] == 1 and stats["written"] == 2 and stats["retries"] >= 1
        assert store.count_events() == 2 and store.query_segments() == []
        assert "refused" in caplog.text
    finally:
        writer.stop()


def test_waits_for_a_foreign_sqlite_lock_without_losing_anything(tmp_path: Path) -> None:
    db = tmp_path / "camfleet.db"
    store = Store.open(f"sqlite:///{db}")
    writer = StoreWriter(store)
    writer.start()
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # someone else holds the write lock
        for n in range(50):
            writer.submit({"kind": "event", "type": "start", "event": _event(3, n)})
        assert not writer.flush(0.3)  # bounded wait: still queued behind the lock
        other.execute("COMMIT")
        assert writer.flush(20)
        assert store.count_events() == 50 and writer.stats["errors"] == 0
    finally:
        other.close()
        writer.stop()
        store.close()


def test_stop_flushes_and_refuses_new_messages(store: Store) -> None:
    writer = StoreWriter(store, max_delay_s=1.0)
    assert writer.flush(0.1)  # nothing submitted: nothing to wait for
    writer.start()
    for n in range(100):
        writer.submit({"kind": "event", "type": "start", "event": _event(4, n)})
    writer.stop(10)
    assert store.count_events() == 100
    with pytest.raises(RuntimeError, match="stopped"):
        writer.submit({"kind": "event", "type": "start", "event": _event(4, 999)})
    writer.stop()  # twice is fine


def test_flush_does_not_wait_for_the_batch_delay(store: Store) -> None:
    writer = StoreWriter(store, max_delay_s=30.0)  # a batch would wait 30 s for company
    writer.start()
    try:
        writer.submit({"kind": "event", "type": "start", "event": _event(5, 1)})
        assert writer.flush(5)
        assert store.get_event("c05-e0001") is not None
    finally:
        writer.stop()
