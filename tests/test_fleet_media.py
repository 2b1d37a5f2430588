"""Media through the coordinator (issue 15, item 2): streamed from the agent that holds it.

Real parts: one NATS server, one ``camfleet agent --api`` process running a
synthetic camera that records 1 s segments (its API on the default: a free
port on the address it registers), one ``camfleet coordinator --api``.
Checked: ``frame.jpg`` and the first MJPEG frame of the agent's camera come
through the coordinator (with the coordinator's own token); a byte range of a
recorded segment comes back as 206 with ``Content-Range``; the agent's API
refuses a request without the fleet's signature (also with the coordinator's
token, a signature for another path, a signed write); after ``kill -9`` of the
agent the coordinator answers 503 "node X unreachable since T" within 2 s (a live
frame, MJPEG, a clip).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from pathlib import Path

import httpx
import nats
import psutil
import pytest

from camfleet.cluster.clusterauth import AUTH_HEADER, load_cluster_key, sign
from camfleet.fleetstore.store import FleetStore
from camfleet_testing.nats import NatsHarness
from tests.support.fleet import seed_capacity, spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.process

_API = re.compile(r"API on (http://\S+)")
CAMERA = {"sources": [{"url": "synthetic://door?width=160&height=120&fps=5", "roles": ["detect", "record"]}],
          "record": {"enabled": True, "segment_seconds": 1}}


def _api_url(log: Path) -> str | None:
    m = _API.search(log.read_text()) if log.exists() else None
    return m.group(1) if m else None


def _fleet_key(url: str) -> bytes:
    async def read() -> bytes:
        client = await nats.connect(url)
        try:
            return await load_cluster_key(client.jetstream(timeout=2))
        finally:
            await client.close()
    return asyncio.run(read())


def test_media_streams_from_the_agent_through_the_coordinator(nats1: NatsHarness, tmp_path: Path,
                                                              shm_dir: Path) -> None:
    data = tmp_path / "agent"
    seed_capacity(data)
    node_yaml = tmp_path / "node.yaml"
    node_yaml.write_text(f"data_dir: {data}\npipelines: {{p: [motion: {{}}]}}\n"
                         "defaults: {pipeline: p, detect: {fps: 5}}\n")
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    store = FleetStore(db)
    viewer = {"Authorization": f"Bearer {store.create_token('wall', 'viewer')}"}
    admin = {"Authorization": f"Bearer {store.create_token('ops', 'admin')}"}
    logs = {"agent": tmp_path / "agent.log", "coord": tmp_path / "coord.log"}
    # no --api: the agent's API takes a free port on the address it registers
    agent = spawn_cli(["agent", "--nats", nats1.url, "--config", str(node_yaml)], logs["agent"])
    coord = spawn_cli(["coordinator", "--nats", nats1.url, "--data-dir", str(tmp_path / "c"), "--db", db,
                       "--base-config", str(node_yaml), "--api", "127.0.0.1:0"], logs["coord"])
    cameras: list[psutil.Process] = []
    try:
        agent_url = wait_for("the agent's API", lambda: _api_url(logs["agent"]), 60)
        url = wait_for("the coordinator's API", lambda: _api_url(logs["coord"]), 60)
        node_id = (data / "node-id").read_text().strip()
        assert "a free port on the registered address" in logs["agent"].read_text()
        with httpx.Client(base_url=url, timeout=10) as http:
            def put_camera() -> bool | None:  # 503 until the coordinator leads (it started a moment ago)
                r = http.put("/api/cameras/door", json=CAMERA, headers=admin)
                assert r.status_code in (200, 503), r.text
                return r.status_code == 200 or None

            wait_for("a leader that takes the camera", put_camera, 30, interval=0.2)
            wait_for("the agent registered", lambda: http.post("/api/apply", headers=admin).json()
                     .get("placed", {}).get("door"), 30)
            assert http.get("/api/cameras/door/frame.jpg").status_code == 401  # the coordinator's auth

            # a live frame, then the MJPEG stream's first frame, both from the agent's camera
            frame = wait_for("a frame through the coordinator",
                             lambda: (r := http.get("/api/cameras/door/frame.jpg", headers=viewer))
                             .status_code == 200 and r, 60, interval=0.2)
            assert frame.content.startswith(b"\xff\xd8") and frame.headers["content-type"] == "image/jpeg"
            assert frame.headers["x-camfleet-node"] == node_id and int(frame.headers["x-frame-seq"]) > 0
            with http.stream("GET", "/api/cameras/door/mjpeg", params={"fps": 5}, headers=viewer) as mj:
                assert mj.status_code == 200 and "multipart/x-mixed-replace" in mj.headers["content-type"]
                buf = b""
                for chunk in mj.iter_raw():
                    buf += chunk
                    if b"\xff\xd9" in buf:
                        break
                assert buf.startswith(b"--camfleetframe\r\nContent-Type: image/jpeg") and b"\xff\xd8" in buf

            # a byte range of a recorded segment: 206 and Content-Range, passed through both ways
            segs = wait_for("a recorded segment", lambda: (r := http.get(
                "/api/recordings", params={"camera": "door"}, headers=viewer)).status_code == 200
                and r.json(), 60, interval=0.3)
            part = http.get(f"/api/recordings/files/{segs[0]['path']}",
                            headers={**viewer, "Range": "bytes=4-99"})
            assert part.status_code == 206, part.text
            assert part.headers["content-range"].startswith("bytes 4-99/") and len(part.content) == 96
            # the camera is required here, and the schema says so (a node lists all its cameras without it)
            unnamed = http.get("/api/recordings", headers=viewer)
            assert unnamed.status_code == 422 and unnamed.json()["detail"][0]["loc"] == ["query", "camera"]
            schema = http.get("/api/openapi.json", headers=viewer).json()
            params = schema["paths"]["/api/recordings"]["get"]["parameters"]
            assert next(p for p in params if p["name"] == "camera")["required"] is True

        # the agent's API: only requests signed with the fleet's key, and only media reads
        key = _fleet_key(nats1.url)
        path = "/api/cameras/door/frame.jpg"
        with httpx.Client(base_url=agent_url, timeout=10) as direct:
            assert direct.get(path).status_code == 401
            assert direct.get(path, headers=admin).status_code == 401
            assert direct.get("/api/health").status_code == 401
            assert direct.get(path, headers={AUTH_HEADER: sign(key, "GET", "/api/events")}).status_code == 401
            assert direct.get(path, headers={AUTH_HEADER: sign(b"x" * 32, "GET", path)}).status_code == 401
            old = sign(key, "GET", path, now=time.time() - 600)
            assert direct.get(path, headers={AUTH_HEADER: old}).status_code == 401
            assert direct.get(path, headers={AUTH_HEADER: sign(key, "GET", path)}).status_code == 200
            signed_status = {AUTH_HEADER: sign(key, "GET", "/api/status")}
            assert direct.get("/api/status", headers=signed_status).status_code == 404
            put = direct.put("/api/cameras/x", headers={AUTH_HEADER: sign(key, "PUT", "/api/cameras/x")})
            assert put.status_code == 404

        # kill -9 the agent: a clear 503 naming it, fast
        cameras = psutil.Process(agent.pid).children(recursive=True)
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        with httpx.Client(base_url=url, timeout=10) as http:
            began = time.monotonic()
            gone = http.get("/api/cameras/door/frame.jpg", headers=viewer)
            took = time.monotonic() - began
            assert gone.status_code == 503, gone.text
            assert f"node {node_id} unreachable since 20" in gone.json()["detail"] and took < 2.0
            assert http.get("/api/cameras/door/mjpeg", headers=viewer).status_code == 503
            began = time.monotonic()
            clip = http.get("/api/recordings/door/clip.mp4", params={"start": segs[0]["start"],
                                                                     "end": segs[0]["end"]}, headers=viewer)
            assert clip.status_code == 503 and f"node {node_id} unreachable" in clip.json()["detail"]
            assert time.monotonic() - began < 2.0
    finally:
        stop_process(agent)
        stop_process(coord)
        for proc in cameras:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(cameras, timeout=5)
        if cameras:  # a node killed with -9 leaves its shared memory, as any crash does
            for leftover in shm_dir.iterdir():
                leftover.unlink()
        store.close()
        for log in logs.values():
            print(f"--- {log.name} (tail)\n" + "\n".join(log.read_text().splitlines()[-15:]))
