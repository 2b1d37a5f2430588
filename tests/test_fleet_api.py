"""The coordinator's API (issue 15, first phase) against a real fleet: NATS, two coordinators, fake agents.

Two ``camfleet coordinator --api 127.0.0.1:0`` processes share one fleet
database; the agents are plain NATS clients (:mod:`tests.support.fake_agents`).
Every request goes to the coordinator that does NOT lead, so each write is seen
to reach the leader over the control API. Checked: the node API's status,
cameras and events shapes hold; staging and apply place the camera; a viewer
token cannot write; events from two nodes come in one list with paging; media
answers 503 naming the node (fake agents serve no media API); the fleet endpoints;
``/metrics``; ``/api/ws`` with status and a live event; a hostile Host; a revoked token refused at once.
"""

from __future__ import annotations

import dataclasses
import json
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from camfleet.cluster.connection import NatsOptions
from camfleet.cluster.control import ControlError, request
from camfleet.cluster.events_sink import CAMERA_HEADER, MSG_ID_HEADER, TOKEN_HEADER, ensure_events_stream
from camfleet.fleetstore.events import Incoming, store_batch
from camfleet.fleetstore.store import FleetStore
from camfleet.runtime.control import CameraStatus, NodeStatus
from camfleet.vocabulary import Event, EventMessage, encode
from camfleet_testing.nats import NatsHarness
from tests.support.fake_agents import FakeAgent
from tests.support.fleet import cli_env, spawn_cli, stop_process
from tests.support.loop_thread import LoopThread

pytestmark = pytest.mark.process

_T = TypeVar("_T")
_URL_RE = re.compile(r"API on (http://\S+)")
NODE_FIELDS = {f.name for f in dataclasses.fields(NodeStatus)}
CAMERA_FIELDS = {f.name for f in dataclasses.fields(CameraStatus)}
EVENT_FIELDS = {"id", "camera", "label", "start", "end", "top_score", "zones", "has_snapshot", "retained",
                "data", "reviewed"}


def _wait(what: str, probe: Callable[[], _T | None], timeout: float) -> _T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _api_url(log: Path) -> str | None:
    m = _URL_RE.search(log.read_text()) if log.exists() else None
    return m.group(1) if m else None


def _token(db: str, name: str, role: str) -> str:
    out = subprocess.run([sys.executable, "-m", "camfleet.cli", "cluster", "token", "create", name, "--role",
                          role, "--db", db], capture_output=True, text=True, env=cli_env(), timeout=60,
                         check=True)
    return out.stdout.strip()


def _event(i: int, node_cam: str, start: float) -> EventMessage:
    return EventMessage("end", Event(id=f"ev{i:02d}", camera=node_cam, label="person" if i % 2 else "car",
                                     start=start, end=start + 1, top_score=0.5 + i / 100, zones=["door"]))


def test_coordinator_serves_the_node_api_for_the_fleet(nats1: NatsHarness, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    admin = _token(db, "ops", "admin")
    store = FleetStore(db)
    viewer = store.create_token("wall", "viewer")
    logs = [tmp_path / f"c{i}.log" for i in (1, 2)]
    procs = [spawn_cli(["coordinator", "--nats", nats1.url, "--data-dir", str(tmp_path / f"c{i}"), "--db", db,
                        "--api", "127.0.0.1:0"], logs[i - 1]) for i in (1, 2)]
    loop = LoopThread()
    client = loop.run(nats.connect(nats1.url))
    agents = [FakeAgent(client, f"node-{c}") for c in "ab"]
    try:
        for agent in agents:
            loop.run(agent.start())
        urls = [_wait(f"coordinator {i}'s API", lambda i=i: _api_url(logs[i]), 30) for i in (0, 1)]  # type: ignore[misc]
        options = NatsOptions((nats1.url,))

        def leader_id() -> str | None:
            try:
                return str(loop.run(request(options, "leader", timeout_s=2))["coordinator_id"])
            except ControlError:
                return None

        lead = _wait("a leader", leader_id, 30)
        ids = [(tmp_path / f"c{i}" / "coordinator-id").read_text().strip() for i in (1, 2)]
        follower = urls[1 - ids.index(lead)]
        _scenario(follower, admin, viewer, store, loop, client, ids[1 - ids.index(lead)], nats1.url)
    finally:
        for agent in agents:
            loop.run(agent.die())
        loop.run(client.close())
        loop.close()
        for proc in procs:
            stop_process(proc)
        store.close()
        for log in logs:
            print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text().splitlines()[-12:]))


def _scenario(url: str, admin: str, viewer: str, store: FleetStore, loop: LoopThread,
              client: Any, follower_id: str, nats_url: str) -> None:
    a = {"Authorization": f"Bearer {admin}"}
    v = {"Authorization": f"Bearer {viewer}"}
    with httpx.Client(base_url=url, timeout=15) as http:
        # auth: none, a viewer writing, a hostile Host
        assert http.get("/api/health").json() == {"status": "ok", "checks": {}}
        assert http.get("/api/ready").status_code == 200
        assert http.get("/api/status").status_code == 401
        cam = {"sources": [{"url": "rtsp://user:hunter2@10.0.0.7/s", "roles": ["detect"]}]}
        assert http.put("/api/cameras/door", json=cam, headers=v).status_code == 403
        assert http.post("/api/apply", headers=v).status_code == 403
        assert http.post("/api/fleet/nodes/node-a/drain", headers=v).status_code == 403
        assert http.get("/api/me", headers=v).json() == {"name": "wall", "role": "viewer", "open": False}
        assert http.get("/api/status", headers={**a, "Host": "evil.example"}).status_code in (400, 403, 421)

        # stage on the non-leader: the leader keeps it; invalid input: 422 with the issues
        bad = http.put("/api/cameras/door", json={"sources": "nope"}, headers=a)
        assert bad.status_code == 422 and bad.json()["valid"] is False and bad.json()["issues"]
        put = http.put("/api/cameras/door", json=cam, headers=a)
        assert put.status_code == 200, put.text
        view = put.json()
        assert view["pending"] == "add" and view["config"] is None and "hunter2" not in put.text
        assert {"name", "config", "staged", "pending", "node"} == set(view)
        changes = http.get("/api/changes", headers=v).json()["changes"]
        assert [c["camera"] for c in changes] == ["door"] and changes[0]["action"] == "add"
        applied = http.post("/api/apply", headers=a)
        assert applied.status_code == 200, applied.text
        body = applied.json()
        assert body["applied"] and body["added"] == ["door"]
        assert body["placed"]["door"] in ("node-a", "node-b")
        node = body["placed"]["door"]
        listed = http.get("/api/cameras", headers=v).json()
        assert [(c["name"], c["pending"], c["node"]) for c in listed] == [("door", "none", node)]
        assert "hunter2" not in json.dumps(listed)

        # status: the node's shape, each camera with its node (the fake agent reports it healthy)
        def healthy() -> dict[str, Any] | None:
            s = http.get("/api/status", headers=v).json()
            return s if s["cameras"].get("door", {}).get("state") == "healthy" else None

        status = _wait("door healthy in the fleet status", healthy, 20)
        assert set(status) == NODE_FIELDS and status["node"] == follower_id
        assert set(status["cameras"]["door"]) == CAMERA_FIELDS | {"node"}
        assert status["cameras"]["door"]["node"] == node

        # events from two nodes in one list, with the node API's filters and paging
        now = time.time()
        store_batch(store.engine, [Incoming(n, i, "door", _event(i, "door", now - i), None, now)
                                   for i, n in enumerate(["node-a", "node-b"] * 3, start=1)])
        page = http.get("/api/events", params={"limit": 4}, headers=v).json()
        assert page["total"] == 6 and page["limit"] == 4 and page["offset"] == 0
        assert [e["id"] for e in page["items"]] == ["ev01", "ev02", "ev03", "ev04"]
        assert {e["node"] for e in page["items"]} == {"node-a", "node-b"}
        assert set(page["items"][0]) == EVENT_FIELDS | {"node", "retain_pending"}
        rest = http.get("/api/events", params={"limit": 4, "offset": 4}, headers=v).json()
        assert [e["id"] for e in rest["items"]] == ["ev05", "ev06"]
        cars = http.get("/api/events", params={"label": "car", "min_score": 0.53, "zone": "door"},
                        headers=v).json()
        assert [e["id"] for e in cars["items"]] == ["ev04", "ev06"] and cars["total"] == 2
        assert http.get("/api/events", params={"node": "node-b"}, headers=v).json()["total"] == 3
        assert http.get("/api/events/ev03", headers=v).json()["node"] == "node-a"
        assert http.get("/api/events/nope", headers=v).status_code == 404
        snap = http.get("/api/events/ev02/snapshot.jpg", headers=v)
        assert snap.status_code == 503 and "node node-b serves no API" in snap.json()["detail"]
        live = http.get("/api/cameras/door/frame.jpg", headers=v)
        assert live.status_code == 503 and f"node {node} serves no API" in live.json()["detail"]

        # the fleet's endpoints
        listing = http.get("/api/fleet/nodes", headers=v).json()
        assert listing["source"] == "leader"
        nodes = listing["nodes"]
        assert {n["node_id"] for n in nodes} == {"node-a", "node-b"}
        assert http.get("/api/fleet/assignments", headers=v).json()["assignments"]["door"]["node"] == node
        assert http.get("/api/fleet/history", headers=v).json()["history"][0]["camera"] == "door"
        assert http.get("/api/fleet/leader", headers=v).json()["answered_by"] == follower_id
        other = "node-b" if node == "node-a" else "node-a"
        cordoned = http.post(f"/api/fleet/nodes/{other}/cordon", headers=a)
        assert cordoned.status_code == 200 and cordoned.json()["cordoned"] is True
        assert http.post(f"/api/fleet/nodes/{other}/uncordon", headers=a).json()["cordoned"] is False
        assert http.post("/api/fleet/nodes/ghost/drain", headers=a).status_code == 400
        metrics = http.get("/metrics", headers=v)
        assert metrics.status_code == 200 and "door" in metrics.text

        # /api/ws: the fleet's status at once, then an event a node publishes
        ws_url = url.replace("http://", "ws://") + f"/api/ws?token={viewer}"
        with pytest.raises(InvalidStatus):  # cross-site WebSocket hijacking: refused before accepting
            ws_connect(ws_url, open_timeout=10, additional_headers={"Origin": "http://evil.example"})
        with ws_connect(ws_url, open_timeout=10) as ws:
            first = json.loads(ws.recv(timeout=10))
            assert first["type"] == "snapshot" and first["status"]["cameras"]["door"]["node"] == node
            live_event = _event(99, "door", time.time())
            loop.run(client.publish("camfleet.events.node-a", encode(live_event).encode()))
            loop.run(client.flush())

            def event_message() -> dict[str, Any] | None:
                message = json.loads(ws.recv(timeout=10))
                return message if message["type"] == "event" else None

            got = _wait("the live event on the WebSocket", event_message, 15)
            assert got["event"]["id"] == "ev99" and got["event"]["node"] == "node-a"

        # removal staged and applied through the non-leader; a revoked token is refused at once
        assert http.delete("/api/cameras/door", headers=a).json()["pending"] == "delete"
        assert http.post("/api/apply", headers=a).json()["removed"] == ["door"]
        assert http.get("/api/cameras", headers=v).json() == []
        row = next(r for r in store.list_tokens() if r.name == "wall")
        assert store.revoke_token(row.id)
        assert http.get("/api/status", headers=v).status_code == 401
    _cli_events(loop, client, nats_url)


def _cli_events(loop: LoopThread, client: Any, nats_url: str) -> None:
    """``camfleet cluster events``: the events of two nodes from the stream, other messages skipped."""

    async def publish() -> None:
        js = client.jetstream(timeout=5.0)
        await ensure_events_stream(js, 1)
        for i, node in enumerate(["node-a", "node-b"], start=1):
            headers = {MSG_ID_HEADER: f"{node}:{i}", TOKEN_HEADER: "1", CAMERA_HEADER: "yard"}
            await js.publish(f"camfleet.events.{node}", encode(_event(50 + i, "yard", time.time())).encode(),
                             headers=headers)
        await js.publish("camfleet.events.node-a", b"not json", headers={MSG_ID_HEADER: "node-a:9"})

    loop.run(publish())
    out = subprocess.run([sys.executable, "-m", "camfleet.cli", "cluster", "events", "--nats", nats_url,
                          "--json", "--camera", "yard"], capture_output=True, text=True, env=cli_env(),
                         timeout=60, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(m["node"], m["event"]["id"], m["token"]) for m in lines] == [("node-a", "ev51", 1),
                                                                          ("node-b", "ev52", 1)]
    # -f: keeps following; an event published after it started comes out as a line
    follow = subprocess.Popen([sys.executable, "-m", "camfleet.cli", "cluster", "events", "--nats", nats_url,
                               "-f", "--camera", "gate"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, env=cli_env())
    try:
        assert follow.stdout is not None
        out_lines = follow.stdout
        for i in (70, 71):  # the second is published only once the first came out: it follows, live
            loop.run(client.jetstream().publish("camfleet.events.node-b",
                                                encode(_event(i, "gate", time.time())).encode(),
                                                headers={MSG_ID_HEADER: f"node-b:{i}"}))
            ready, _, _ = select.select([out_lines], [], [], 20)
            assert ready, "no line from camfleet cluster events -f within 20 s"
            line = out_lines.readline()
            assert "node-b" in line and "gate" in line and f"ev{i}" in line
        assert follow.poll() is None  # still following
    finally:
        stop_process(follow)  # type: ignore[arg-type]


def test_without_a_leader_and_hostile_input(nats1: NatsHarness, tmp_path: Path) -> None:
    """No coordinator leads: reads answer from the database, writes 503 (not a hang); bad input 4xx."""
    from camfleet.api.fleet import create_fleet_app
    from camfleet.api.server import ApiServer
    from camfleet.config import ApiSettings

    store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    admin = store.create_token("ops", "admin")
    options = NatsOptions((nats1.url,))
    app = create_fleet_app(store, options, ApiSettings(), coordinator_id="c-test", max_body_bytes=4096)
    a = {"Authorization": f"Bearer {admin}"}
    try:
        with ApiServer(app) as server, httpx.Client(base_url=server.url, timeout=20) as http:
            assert http.get("/api/ready").json()["checks"] == {"nats": True, "store": True}
            assert http.get("/api/cameras", headers=a).json() == []
            assert http.get("/api/events", headers=a).json() == {"items": [], "total": 0, "limit": 50,
                                                                  "offset": 0}
            status = http.get("/api/status", headers=a).json()
            assert set(status) == NODE_FIELDS and status["cameras"] == {}
            started = time.monotonic()
            put = http.put("/api/cameras/door", json={"sources": []}, headers=a)
            assert put.status_code == 503 and "no leader" in put.json()["detail"]
            assert time.monotonic() - started < 5  # no responders: at once, not after the timeout
            store.update_node("node-z", record={"hostname": "z", "labels": {}}, state="alive")
            stored = http.get("/api/fleet/nodes", headers=a).json()
            assert stored["source"] == "database" and stored["nodes"][0]["hostname"] == "z"
            assert http.get("/api/fleet/assignments", headers=a).status_code == 503
            assert http.post("/api/apply", headers=a).status_code == 503
            deep: Any = {}
            for _ in range(40):
                deep = {"x": deep}
            assert http.put("/api/cameras/door", json=deep, headers=a).status_code == 422
            big = b"{" + b" " * 8000 + b"}"
            assert http.put("/api/cameras/door", content=big, headers=a).status_code == 413
            assert http.put("/api/cameras/..%2Fx", json={}, headers=a).status_code in (404, 422)
            assert http.get("/api/events", params={"limit": 0}, headers=a).status_code == 422
            assert http.get("/api/fleet/history", params={"camera": "a b"}, headers=a).status_code == 422
            assert http.get("/api/cameras/ghost/mjpeg", headers=a).status_code == 404
            assert http.get("/api/status", headers={"Authorization": "Bearer cft_nope"}).status_code == 401
        with pytest.raises(ValueError, match="loopback"):
            ApiServer(create_fleet_app(store, options, ApiSettings(host="127.0.0.1", open=True),
                                       coordinator_id="c-test"), host="0.0.0.0")
        open_app = create_fleet_app(store, options, ApiSettings(open=True), coordinator_id="c-test")
        with ApiServer(open_app) as server, httpx.Client(base_url=server.url, timeout=20) as http:
            assert http.get("/api/me").json() == {"name": "open", "role": "admin", "open": True}
            with store.engine.begin() as conn:  # the database goes bad under the API
                conn.exec_driver_sql("DROP TABLE fleet_cameras")
                conn.exec_driver_sql("DROP TABLE fleet_events")
            broken = http.get("/api/cameras")
            assert broken.status_code == 503 and "fleet database is unavailable" in broken.json()["detail"]
            assert http.get("/api/events").status_code == 503
    finally:
        store.close()


def test_api_serves_while_nats_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NATS down at start: the API still serves, says so in ready, and leader requests answer 503."""
    from camfleet.api.fleet import create_fleet_app, link
    from camfleet.api.server import ApiServer
    from camfleet.config import ApiSettings

    monkeypatch.setattr(link, "FIRST_CONNECT_S", 0.5)
    store = FleetStore(f"sqlite:///{tmp_path / 'fleet.db'}")
    dead = NatsOptions(("nats://127.0.0.1:9",))  # discard port: nothing listens
    try:
        app = create_fleet_app(store, dead, ApiSettings(open=True), coordinator_id="c-test")
        with ApiServer(app) as server, httpx.Client(base_url=server.url, timeout=20) as http:
            ready = http.get("/api/ready")
            assert ready.status_code == 503 and ready.json()["checks"] == {"nats": False, "store": True}
            assert http.get("/api/cameras").json() == []
            put = http.put("/api/cameras/door", json={"sources": []})
            assert put.status_code == 503 and "not connected to NATS" in put.json()["detail"]
    finally:
        store.close()
