"""Event snapshots in the store (SQLite and PostgreSQL): indexed with their event, backfilled."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from camfleet.store import EventRecord, Store
from camfleet.store import migrate as migrations

pytestmark = pytest.mark.process


def _event(eid: str, snapshot: str | None, camera: str = "door") -> EventRecord:
    return EventRecord(id=eid, camera=camera, label="person", start=100.0, snapshot=snapshot)


def test_an_event_with_a_snapshot_is_indexed_once_and_follows_its_path(store: Store) -> None:
    store.upsert_events([_event("e1", "/data/snapshots/door/e1.jpg"), _event("e2", None),
                         _event("e3", "/data/snapshots/yard/e3.jpg", camera="yard")])
    snaps = store.snapshots()
    assert sorted((s.event_id, s.camera) for s in snaps) == [("e1", "door"), ("e3", "yard")]
    first = {s.event_id: s.updated for s in snaps}
    store.upsert_event(_event("e1", "/data/snapshots/door/e1.jpg"))  # same frame: row untouched
    assert {s.event_id: s.updated for s in store.snapshots()}["e1"] == first["e1"]
    store.upsert_event(_event("e2", "/data/snapshots/door/e2.jpg"))  # a snapshot arrives later
    door = store.snapshots(camera="door")
    assert [s.event_id for s in door] == ["e2", "e1"]  # newest first
    assert store.snapshots(camera="door", limit=1)[0].event_id == "e2"


def test_migration_backfills_snapshots_of_existing_events(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        store.upsert_events([_event("old", "/s/old.jpg"), _event("bare", None)])
        migrations.downgrade(store.engine, "0001")
        with store.engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 2
        migrations.upgrade(store.engine)
        assert [(s.event_id, s.path) for s in store.snapshots()] == [("old", "/s/old.jpg")]
    finally:
        store.close()


def test_later_migrations_keep_every_snapshot_row(db_url: str) -> None:
    """No migration after 0002 may copy the events table: on SQLite the copy's drop cascades
    (foreign keys are on) to the snapshot index, losing every row of an existing user's."""
    store = Store.open(db_url)
    try:
        store.upsert_events([_event("a", "/s/a.jpg"), _event("b", "/s/b.jpg", camera="yard")])
        before = sorted((s.event_id, s.path) for s in store.snapshots())
        migrations.downgrade(store.engine, "0002")
        with store.engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM snapshots")).scalar() == 2
        migrations.upgrade(store.engine)
        assert sorted((s.event_id, s.path) for s in store.snapshots()) == before
    finally:
        store.close()
