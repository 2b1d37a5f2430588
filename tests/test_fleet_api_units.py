"""Pure parts of the coordinator's API: the fleet status merge, the fleet's tokens."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from camfleet.api.fleet.status import STALE_S, FleetStatusSource
from camfleet.fleetstore.store import FleetCamera, FleetStore

pytestmark = pytest.mark.unit


class _Reports:
    """Stands in for the NATS link: fixed status reports per node."""

    def __init__(self, reports: dict[str, tuple[dict[str, Any], float]]) -> None:
        self.reports = reports

    def statuses(self) -> dict[str, tuple[dict[str, Any], float]]:
        return self.reports


def test_status_shows_each_camera_from_its_assigned_node_only(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        store.apply({n: FleetCamera(n, {"sources": []}, {}) for n in ("door", "yard", "gate", "shed")})
        store.record_placements({"door": ("node-a", 1), "yard": ("node-b", 2), "shed": ("node-c", 3)}, [], 1)
        now = time.monotonic()
        healthy = {"state": "healthy", "decode_fps": 15.0, "bogus": 1,
                   "processes": {"ingest": {"kind": "ingest", "state": "healthy", "pid": 7}, "x": "junk"}}
        reports = {
            "node-a": ({"cameras": {"door": healthy}, "detectors": {"cpu": {"kind": "detector",
                                                                           "state": "healthy"}},
                        "outbox": {"delivered": 3}}, now),
            "node-b": ({"cameras": {"yard": healthy, "door": {"state": "failed"}},  # a fenced node's door
                        "outbox": {"delivered": 2, "bad": "x"}}, now - STALE_S - 1),
        }
        status = FleetStatusSource(store, _Reports(reports), "c1").status().to_json()  # type: ignore[arg-type]
        cams = status["cameras"]
        door = cams["door"]
        assert (door["state"], door["node"], door["decode_fps"]) == ("healthy", "node-a", 15.0)
        assert list(cams["door"]["processes"]) == ["ingest"] and "bogus" not in cams["door"]
        assert cams["yard"]["state"] == "unresponsive" and "node-b silent" in cams["yard"]["reason"]
        assert (cams["gate"]["state"], cams["gate"]["node"]) == ("stopped", None)
        assert cams["shed"]["state"] == "starting" and "no status from it yet" in cams["shed"]["reason"]
        assert list(status["detectors"]) == ["node-a/cpu"] and status["outbox"] == {"delivered": 5}
        assert status["node"] == "c1" and status["reload"]["generation"] == 1
    finally:
        store.close()


def test_fleet_tokens(tmp_path: Path) -> None:
    store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        token = store.create_token("ops", "viewer")
        assert token.startswith("cft_")
        row = store.verify_token(token)
        assert row is not None and (row.name, row.role) == ("ops", "viewer")
        assert store.verify_token(token + "x") is None
        with pytest.raises(ValueError, match="role"):
            store.create_token("x", "root")
        with pytest.raises(ValueError, match="name"):
            store.create_token("", "admin")
        assert store.revoke_token(row.id) and store.revoke_token(row.id)
        assert not store.revoke_token(999)
        assert store.verify_token(token) is None
        assert [(r.name, r.active) for r in store.list_tokens()] == [("ops", False)]
        assert token not in repr(store.list_tokens())
    finally:
        store.close()


def test_the_coordinator_serves_the_node_api_paths(tmp_path: Path) -> None:
    """Every path and method of the node's status, cameras, events, media, metrics and ws routers exists."""
    from fastapi.routing import APIRoute, APIWebSocketRoute

    from camfleet.api.fleet import create_fleet_app
    from camfleet.api.routers import cameras, events, live, metrics, recordings, system, ws
    from camfleet.cluster.connection import NatsOptions
    from camfleet.config import ApiSettings

    def paths(routes: list[Any]) -> set[tuple[str, str]]:
        out = set()
        for r in routes:
            inner = getattr(r, "original_router", None)  # FastAPI >= 0.16x keeps included routers whole
            if inner is not None:
                out |= paths(inner.routes)
            elif isinstance(r, APIRoute):
                out |= {(r.path, m) for m in r.methods}
            elif isinstance(r, APIWebSocketRoute):
                out.add((r.path, "WS"))
        return out

    node: set[tuple[str, str]] = set()
    for module in (system, cameras, events, live, recordings, metrics, ws):
        for name in ("public", "router"):
            r = getattr(module, name, None)
            if r is not None:
                node |= paths(r.routes)
    store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    try:
        app = create_fleet_app(store, NatsOptions(("nats://127.0.0.1:1",)), ApiSettings(), coordinator_id="c")
        fleet = paths(app.router.routes)
        assert node - fleet == set()  # storage too: every node's, summed (routes_storage)
        assert {("/api/fleet/nodes", "GET"), ("/api/fleet/nodes/{node_id}/drain", "POST"),
                ("/api/openapi.json", "GET")} <= fleet
        schema = app.openapi()
        events_params = {p["name"] for p in schema["paths"]["/api/events"]["get"]["parameters"]}
        assert {"camera", "label", "zone", "after", "before", "limit", "offset", "min_score",
                "reviewed", "node"} == events_params
    finally:
        store.close()


def test_a_cameras_config_shows_its_defaults_as_on_a_node() -> None:
    from types import SimpleNamespace

    from camfleet.api.fleet.routes_cameras import _resolved, _section

    ctx: Any = SimpleNamespace(base=None)  # the embedded default's pipelines, models and defaults
    door = FleetCamera("door", {"sources": [{"url": "rtsp://u:pw@10.0.0.7/s", "roles": ["detect"]}]},
                       {"decode_pps": 1.0})
    resolved = _resolved(ctx, {"door": door})
    assert resolved["door"]["pipeline"] and resolved["door"]["detect"]["fps"] > 0
    assert _resolved(ctx, {"door": door}) is resolved  # kept while the cameras stay the same
    shown = _section(door, resolved["door"])
    assert shown is not None and shown["placement"] == {"decode_pps": 1.0}
    assert shown["sources"][0]["url"] == "rtsp://***:***@10.0.0.7/s"
    # a camera that no longer validates on the base shows its settings as given
    stale = FleetCamera("door", {"sources": [], "pipeline": "gone"}, {})
    assert _resolved(ctx, {"door": stale}) == {}
    assert _section(stale, None) == {"sources": [], "pipeline": "gone"}
