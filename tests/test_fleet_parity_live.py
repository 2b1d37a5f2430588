"""The node API's remaining routes on a real fleet (issue 15): config, storage, reviewed/retain, ``/meta``.

One fleet for the module: a NATS server, one ``camfleet agent`` running a synthetic
camera that records 1 s segments, one ``camfleet coordinator --api``. Checked, in
order: ``/api/config`` shows the fleet's camera and ``validate`` checks a fleet
document as apply does; ``/api/storage`` sums the agent's own answer; reviewed and
retain marks are kept centrally and retain reaches the agent's database (a signed
PUT); the ``/meta`` WebSocket relays the agent's live detections. Then ``kill -9``
of the agent: the open ``/meta`` socket closes with 1013 naming the node, storage
names it as unreachable (200, not a 5xx), a retain set meanwhile is pending, and
once the agent is back the coordinator tells it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect as ws_connect

from camfleet.fleetstore.events import Incoming, store_batch
from camfleet.fleetstore.store import FleetStore
from camfleet.store import Store
from camfleet.vocabulary import Event, EventMessage
from camfleet_testing.nats import NatsHarness
from tests.support.fleet import seed_capacity, spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.process

_API = re.compile(r"API on (http://\S+)")
CAMERA = {"sources": [{"url": "synthetic://door?width=160&height=120&fps=5", "roles": ["detect", "record"]}],
          "record": {"enabled": True, "segment_seconds": 1}, "detect": {"width": 160, "height": 120}}


@dataclass
class Fleet:
    """The module's fleet: its URLs, tokens, the agent's identity and data."""

    url: str
    viewer: dict[str, str]
    admin: dict[str, str]
    viewer_token: str
    node_id: str
    agent_data: Path
    node_yaml: Path
    nats_url: str
    store: FleetStore
    logs: dict[str, Path]
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]]

    def start_agent(self) -> None:
        self.procs["agent"] = spawn_cli(["agent", "--nats", self.nats_url, "--config", str(self.node_yaml)],
                                        self.logs["agent"], env=self.env)

    def kill_agent(self) -> None:
        """``kill -9`` the agent and its camera processes (a crash leaves its shared memory: removed)."""
        agent = self.procs["agent"]
        children = psutil.Process(agent.pid).children(recursive=True)
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        for proc in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(children, timeout=5)
        shm = Path(self.env["CAMFLEET_SHM_DIR"])
        for leftover in shm.iterdir():
            leftover.unlink()


def _api_url(log: Path, after: int = 0) -> str | None:
    m = _API.search(log.read_text()[after:]) if log.exists() else None
    return m.group(1) if m else None


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fparity")
    shm = Path("/dev/shm") / f"camfleet-fparity-{os.getpid()}-{secrets.token_hex(3)}"
    shm.mkdir(mode=0o700)
    data = root / "agent"
    seed_capacity(data)
    node_yaml = root / "node.yaml"
    node_yaml.write_text(f"data_dir: {data}\npipelines: {{p: [motion: {{}}]}}\n"
                         "defaults: {pipeline: p, detect: {fps: 5}}\ncompat: {frigate: true}\n")
    db = f"sqlite:///{root / 'fleet.db'}"
    store = FleetStore(db)
    viewer_token = store.create_token("wall", "viewer")
    logs = {"agent": root / "agent.log", "coord": root / "coord.log"}
    env = {"CAMFLEET_SHM_DIR": str(shm)}
    with NatsHarness(root / "nats", 1) as nats:
        procs = {"coord": spawn_cli(["coordinator", "--nats", nats.url, "--data-dir", str(root / "c"),
                                     "--db", db, "--base-config", str(node_yaml), "--api", "127.0.0.1:0"],
                                    logs["coord"], env=env)}
        fl = Fleet("", {"Authorization": f"Bearer {viewer_token}"},
                   {"Authorization": f"Bearer {store.create_token('ops', 'admin')}"}, viewer_token, "", data,
                   node_yaml, nats.url, store, logs, env, procs)
        try:
            fl.start_agent()
            wait_for("the agent's API", lambda: _api_url(logs["agent"]), 60)
            fl.url = wait_for("the coordinator's API", lambda: _api_url(logs["coord"]), 60)
            fl.node_id = (data / "node-id").read_text().strip()
            with httpx.Client(base_url=fl.url, timeout=10) as http:
                # the API listens before a leader answers (503 "no leader" meanwhile): wait for one
                wait_for("a leader taking the camera", lambda: http.put(
                    "/api/cameras/door", json=CAMERA, headers=fl.admin).status_code == 200 or None, 30, 0.2)
                wait_for("the camera placed", lambda: http.post("/api/apply", headers=fl.admin).json()
                         .get("placed", {}).get("door"), 30)
            yield fl
        finally:
            for proc in procs.values():
                stop_process(proc)
            store.close()
            shutil.rmtree(shm, ignore_errors=True)
            for log in logs.values():
                print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text().splitlines()[-15:]))


def test_config_is_the_fleets_and_validate_checks_as_apply_does(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.url, timeout=10) as http:
        config = http.get("/api/config", headers=fleet.viewer).json()
        assert config["cameras"]["door"]["sources"][0]["url"].startswith("synthetic://door")
        good = ("cameras:\n  door:\n    sources: [{url: 'synthetic://x', roles: [detect]}]\n"
                "    placement: {pin: n1}\n")
        assert http.post("/api/config/validate", content=good, headers=fleet.viewer).status_code == 403
        ok = http.post("/api/config/validate", content=good,
                       headers=fleet.admin | {"content-type": "text/plain"})
        assert ok.json() == {"valid": True, "issues": []}
        bad = http.post("/api/config/validate", content=good.replace("p, ", "").replace("detect]", "nope]"),
                        headers=fleet.admin).json()
        assert not bad["valid"] and bad["issues"][0]["path"].startswith("cameras.door.sources")


def _event(fleet: Fleet, event_id: str) -> None:
    """An event of the agent's camera, in the agent's database and (as the consumer would) centrally."""
    event = Event(id=event_id, camera="door", label="person", start=1000.0, end=1001.0, top_score=0.8,
                  snapshot=f"door/{event_id}.jpg", data={"box": [40, 30, 120, 90]})
    folder = fleet.agent_data / "snapshots" / "door"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (160, 120), (200, 40, 40)).save(folder / f"{event_id}.jpg", "JPEG")
    node_store = Store.open(f"sqlite:///{fleet.agent_data / 'camfleet.db'}")
    try:
        node_store.write_batch(events=[event])
    finally:
        node_store.close()
    store_batch(fleet.store.engine, [Incoming(node=fleet.node_id, seq=1, camera="door", token=1,
                                              published_at=1000.0, message=EventMessage("end", event))])


def _node_retained(fleet: Fleet, event_id: str) -> bool:
    node_store = Store.open(f"sqlite:///{fleet.agent_data / 'camfleet.db'}")
    try:
        found = node_store.get_event(event_id)
        assert found is not None
        return found.retained
    finally:
        node_store.close()


def test_reviewed_and_retain_are_central_and_retain_reaches_the_node(fleet: Fleet) -> None:
    _event(fleet, "evkeep")
    with httpx.Client(base_url=fleet.url, timeout=10) as http:
        assert http.put("/api/events/evkeep/reviewed", json={"reviewed": True}, headers=fleet.viewer
                        ).status_code == 403
        one = http.put("/api/events/evkeep/reviewed", json={"reviewed": True}, headers=fleet.admin)
        assert one.status_code == 200 and one.json()["reviewed"] is True
        assert [e["id"] for e in http.get("/api/events", params={"reviewed": "true"},
                                          headers=fleet.viewer).json()["items"]] == ["evkeep"]
        many = http.post("/api/events/reviewed", json={"ids": ["evkeep", "ghost"], "reviewed": False},
                         headers=fleet.admin)
        assert many.json() == {"updated": 1}
        assert http.put("/api/events/ghost/retain", json={"retained": True}, headers=fleet.admin
                        ).status_code == 404
        kept = http.put("/api/events/evkeep/retain", json={"retained": True}, headers=fleet.admin)
        assert kept.status_code == 200, kept.text
        assert (kept.json()["retained"], kept.json()["retain_pending"]) == (True, False)
        assert "x-camfleet-pending" not in kept.headers
    assert _node_retained(fleet, "evkeep")  # told at once, through the agent's signed API


def test_meta_websocket_relays_the_nodes_live_detections(fleet: Fleet) -> None:
    ws_url = fleet.url.replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(f"{ws_url}/api/cameras/door/meta", open_timeout=5).close()
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as unknown:
        ws_connect(f"{ws_url}/api/cameras/nope/meta?token={fleet.viewer_token}", open_timeout=5).close()
    assert unknown.value.response.status_code == 404
    with ws_connect(f"{ws_url}/api/cameras/door/meta?token={fleet.viewer_token}", open_timeout=5) as ws:
        record = json.loads(ws.recv(timeout=30))  # the camera may still be starting
        assert {"seq", "t", "objects", "motion"} <= set(record)


def test_storage_is_each_nodes_own_answer_summed(fleet: Fleet) -> None:
    with httpx.Client(base_url=fleet.url, timeout=10) as http:
        got = http.get("/api/storage", headers=fleet.viewer).json()
        mine = got["nodes"][fleet.node_id]["storage"]
        assert got["recordings_dir_total_bytes"] == mine["recordings_dir_total_bytes"] > 0
        assert got["cameras"] == mine["cameras"] and got["nodes"][fleet.node_id]["error"] is None
        assert got["events"] == 1  # the fleet's events, counted centrally


def test_frigate_api_serves_every_camera_of_the_fleet(fleet: Fleet) -> None:
    with httpx.Client(base_url=f"{fleet.url}/frigate/api", timeout=10) as http:
        assert http.get("/events").status_code == 401
        login = http.post("/login", json={"user": "ha", "password": fleet.viewer_token})
        assert login.status_code == 200, login.text
        session = {"Authorization": f"Bearer {login.cookies['frigate_token']}"}
        assert "door" in http.get("/config", headers=session).json()["cameras"]
        assert "door" in http.get("/stats", headers=session).json()["cameras"]
        events = http.get("/events", params={"cameras": "door", "labels": "person"}, headers=session).json()
        assert [(e["id"], e["retain_indefinitely"], e["has_snapshot"]) for e in events] == [
            ("evkeep", True, True)]
        snap = http.get("/events/evkeep/snapshot.jpg", headers=session)
        assert snap.status_code == 200 and snap.content.startswith(b"\xff\xd8")
        small = http.get("/events/evkeep/snapshot.jpg", params={"crop": 1, "h": 50}, headers=session)
        thumb = http.get("/events/evkeep/thumbnail.jpg", headers=session)
        for got, rows in ((small, 50), (thumb, 175)):
            assert got.status_code == 200, got.text
            with Image.open(io.BytesIO(got.content)) as im:
                assert im.size == (rows, rows)  # a square around the object, as Frigate crops
        latest = http.get("/door/latest.jpg", params={"h": 60}, headers=session)
        assert latest.status_code == 200, latest.text
        with Image.open(io.BytesIO(latest.content)) as im:
            assert im.size == (80, 60)
        assert http.get("/events/ghost", headers=session).status_code == 404


def test_node_down_is_named_and_a_retain_waits_for_it(fleet: Fleet) -> None:
    ws_url = fleet.url.replace("http://", "ws://")
    with ws_connect(f"{ws_url}/api/cameras/door/meta?token={fleet.viewer_token}", open_timeout=5) as ws:
        ws.recv(timeout=15)
        fleet.kill_agent()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        assert f"node {fleet.node_id} unreachable since" in closed.value.rcvd.reason
    with httpx.Client(base_url=fleet.url, timeout=10) as http:
        storage = http.get("/api/storage", headers=fleet.viewer)
        assert storage.status_code == 200
        assert "unreachable since" in storage.json()["nodes"][fleet.node_id]["error"]
        with ws_connect(f"{ws_url}/api/cameras/door/meta?token={fleet.viewer_token}", open_timeout=5) as ws:
            with pytest.raises(ConnectionClosed) as refused:
                ws.recv(timeout=5)
            assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
        released = http.put("/api/events/evkeep/retain", json={"retained": False}, headers=fleet.admin)
        assert released.status_code == 200 and released.json()["retain_pending"] is True
        assert "unreachable" in released.headers["x-camfleet-pending"]
        assert _node_retained(fleet, "evkeep")  # not told yet

        log_size = fleet.logs["agent"].stat().st_size
        fleet.start_agent()
        wait_for("the agent back", lambda: _api_url(fleet.logs["agent"], log_size), 60)
        wait_for("the pending retain delivered", lambda: http.get(
            "/api/events/evkeep", headers=fleet.viewer).json()["retain_pending"] is False, 30, interval=0.3)
    assert not _node_retained(fleet, "evkeep")
    fleet.kill_agent()  # the agent is still starting its camera: a clean stop would wait for that
