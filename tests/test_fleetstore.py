"""The fleet database on SQLite and PostgreSQL: staging, apply, flags, assignments, history, counters."""

from __future__ import annotations

import pytest

from camfleet.fleetstore.store import FleetCamera, FleetStore

pytestmark = pytest.mark.process  # PostgreSQL: a real server

CAM = {"sources": [{"url": "rtsp://u:pw@10.0.0.1/s", "roles": ["detect"]}]}


def test_store_stages_applies_and_keeps_flags(db_url: str) -> None:
    store = FleetStore(db_url)
    try:
        store.stage({"door": FleetCamera("door", dict(CAM), {}), "gone": None})
        assert set(store.staged()) == {"door", "gone"} and store.staged()["gone"] is None
        assert store.apply({"door": FleetCamera("door", dict(CAM), {"group": "g"})}) == 1
        assert store.staged() == {} and store.cameras()["door"].placement == {"group": "g"}
        store.update_node("a", cordoned=True)
        store.update_node("b", state="alive")
        assert store.flags() == {"a": (True, False)}
        store.record_placements({"door": ("b", 3)}, [("door", None, "b", 3, "new camera")], term=7)
        assert store.assignments() == {"door": ("b", 3)}
        assert store.history()[0]["reason"] == "new camera"
        assert store.apply({}) == 2 and store.cameras() == {}
        store.raise_counter("revision", 5)
        store.raise_counter("revision", 2)
        assert store.counter("revision") == 5
    finally:
        store.close()
