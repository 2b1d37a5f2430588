"""API hardening (issue 12, items 1, 2, 3 and 6) against a real node, store and uvicorn server.

* DNS rebinding (a foreign ``Host``) and cross-site requests (a foreign
  ``Origin`` on writes and WebSockets) are refused in every mode, open mode
  on loopback included;
* clip exports cannot fill the disk: spans share cached files per segment,
  the cache is capped in bytes, exports per token are capped, the storage
  floor is never crossed for a clip and deletes clips before recordings;
* only indexed segment files are served, and a recordings directory that
  contains the data directory is refused;
* readiness is constant-time, recordings are paged, WebSockets per token are
  capped, and the API docs need a token and no CDN.

The cases that take ``rt`` or ``open_server`` also run against the fleet's
coordinator (:mod:`tests.support.api_target`); ``node_only`` ones say why not.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from camfleet.api import ApiServer, create_app
from camfleet.config import ApiSettings, ConfigError, load_config_text
from camfleet.store import SegmentRecord
from tests.support.api_node import camera_yaml, running, shm_env, wait_ws
from tests.support.api_target import Target, node_target, targets

pytestmark = pytest.mark.process
pytest_generate_tests = targets("open_server")

MIB = 2**20
CLIPS_ON_THE_NODE = ("clips are cut, cached and capped by the node that holds the recordings; the "
                     "coordinator relays the node's answer (test_clips_from_recordings[fleet])")


@pytest.fixture(scope="module")
def rt(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if request.param == "fleet":
        yield request.getfixturevalue("api_fleet").target()
        return
    tmp = tmp_path_factory.mktemp("apisec")
    with shm_env("camfleet-apisec") as shm, running(tmp, camera_yaml("cam1", record=True)) as r:
        yield node_target(r)
        assert r.shm == shm
    assert not shm.exists()


@pytest.fixture(autouse=True)
def _module_shm(rt: Target, shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMFLEET_SHM_DIR", str(rt.shm))


def _server(rt: Target, settings: ApiSettings, data_dir: Path | None = None) -> ApiServer:
    """Another API server in front of the module's node (or fleet) and store, with ``settings``."""
    if data_dir is None:
        return ApiServer(rt.app(settings), "127.0.0.1", 0)
    app = create_app(rt.node, rt.store, settings, data_dir=data_dir, recordings_dir=rt.config.recordings_path)
    return ApiServer(app, "127.0.0.1", 0)


@pytest.fixture(scope="module")
def open_server(rt: Target) -> Iterator[ApiServer]:
    """Open mode on loopback (the embedded default): any local client is admin without a token."""
    with _server(rt, ApiSettings(open=True)) as s:
        yield s


def _segments(rt: Target, n: int, timeout: float = 40) -> list[dict[str, Any]]:
    """At least ``n`` finished segments of cam1 (the recorder closes one every 2 s)."""
    deadline = time.monotonic() + timeout
    with rt.client(rt.viewer) as c:
        while True:
            segs: list[dict[str, Any]] = c.get("/api/recordings", params={"camera": "cam1"}).json()
            if len(segs) >= n or time.monotonic() > deadline:
                assert len(segs) >= n, segs
                return segs
            time.sleep(0.5)  # the recorder runs in another process: nothing to await over HTTP


def _viewer(rt: Target, server: ApiServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {rt.viewer}"}, timeout=20)


def _ws(url: str, token: str | None = None, **kwargs: Any) -> ClientConnection:
    ws_url = url.replace("http://", "ws://") + "/api/ws" + (f"?token={token}" if token else "")
    return connect(ws_url, open_timeout=5, close_timeout=2, **kwargs)


# ----------------------------------------------------------------------------- item 1: Host and Origin


def test_dns_rebinding_host_is_refused_in_open_mode(open_server: ApiServer) -> None:
    port = open_server.port
    with httpx.Client(base_url=open_server.url, timeout=10) as c:
        # the attack of the issue: a page at evil.example rebinds its name to 127.0.0.1
        r = c.get("/api/config", headers={"Host": f"evil.example:{port}"})
        assert r.status_code == 421 and "allowed_hosts" in r.json()["detail"]
        assert "cameras" not in r.text
        for host in (f"evil.example:{port}", "evil.example", "localhost.evil.example", "a:b:c", "[::1"):
            assert c.get("/api/me", headers={"Host": host}).status_code == 421, host
            assert c.post("/api/changes/discard", headers={"Host": host}).status_code == 421, host
        # loopback names and addresses with any port are served
        for host in (f"127.0.0.1:{port}", "localhost", f"LOCALHOST:{port}", f"[::1]:{port}", "10.1.2.3:80"):
            assert c.get("/api/me", headers={"Host": host}).status_code == 200, host


def test_configured_hosts_and_origins_are_accepted(rt: Target) -> None:
    settings = ApiSettings(open=True, allowed_hosts=["cams.example.org", "proxy.example.net:8443"])
    with _server(rt, settings) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        port = server.port
        for host in ("cams.example.org", f"cams.example.org:{port}", "proxy.example.net:8443"):
            assert c.get("/api/me", headers={"Host": host}).status_code == 200, host
        for host in (f"cams.example.org.evil.example:{port}", "proxy.example.net:8444", "evil.example"):
            assert c.get("/api/me", headers={"Host": host}).status_code == 421, host
        # a reverse proxy's public name is an allowed Origin (its Host may be rewritten)
        for origin, status in (("https://cams.example.org", 200), ("https://proxy.example.net:8443", 200),
                               ("https://proxy.example.net", 403)):
            assert c.post("/api/changes/discard", headers={"Origin": origin}).status_code == status, origin
        with _ws(server.url, origin="https://cams.example.org") as ws:  # type: ignore[arg-type]
            wait_ws(ws, lambda m: m["type"] == "snapshot", 10)


def test_dns_rebinding_websocket_is_refused(open_server: ApiServer) -> None:
    port = open_server.port
    # a real WebSocket client that believes it talks to evil.example (its Host) but reaches 127.0.0.1
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            pytest.raises(InvalidStatus) as info:
        connect(f"ws://evil.example:{port}/api/ws", sock=sock, open_timeout=5)
    assert info.value.response.status_code == 421
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            connect(f"ws://localhost:{port}/api/ws", sock=sock, open_timeout=5) as ws:
        wait_ws(ws, lambda m: m["type"] == "snapshot", 10)


def test_cross_site_websocket_is_refused(open_server: ApiServer) -> None:
    url = open_server.url
    for origin in ("http://evil.example", f"http://evil.example:{open_server.port}", "null",
                   "http://127.0.0.1:1", "file://", "http://user@127.0.0.1"):
        with pytest.raises(InvalidStatus) as info:
            _ws(url, origin=origin)  # type: ignore[arg-type]
        assert info.value.response.status_code == 403, origin
    # the UI itself (same origin), and non-browser clients (no Origin)
    for origin in (url, None):
        with _ws(url, origin=origin) as ws:  # type: ignore[arg-type]
            wait_ws(ws, lambda m: m["type"] == "snapshot", 10)


def test_cross_site_writes_are_refused_reads_are_not(open_server: ApiServer) -> None:
    with httpx.Client(base_url=open_server.url, timeout=10) as c:
        for origin in ("http://evil.example", "null", "http://localhost:1"):
            r = c.post("/api/changes/discard", headers={"Origin": origin})
            assert r.status_code == 403, origin
            assert c.put("/api/cameras/x", json={}, headers={"Origin": origin}).status_code == 403
            assert c.delete("/api/cameras/x", headers={"Origin": origin}).status_code == 403
        assert c.post("/api/changes/discard", headers={"Origin": open_server.url}).status_code == 200
        assert c.post("/api/changes/discard").status_code == 200  # curl, scripts
        # reads stay possible from clients that say nothing of where they come from
        assert c.get("/api/me", headers={"Origin": "http://evil.example"}).status_code == 200
        # a browser that sends Fetch Metadata: another site's <img>/<video>/fetch is refused, even a GET
        # (no clip export, no frame for a foreign page); a link to the UI still opens it
        cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "video"}
        assert c.get("/api/recordings/cam1/clip.mp4", params={"start": 1, "end": 2},
                     headers=cross).status_code == 403
        image = {**cross, "Sec-Fetch-Dest": "image"}
        assert c.get("/api/cameras/cam1/frame.jpg", headers=image).status_code == 403
        assert c.post("/api/changes/discard", headers={**cross, "Sec-Fetch-Mode": "cors"}).status_code == 403
        link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        assert c.get("/", headers=link).status_code == 200
        same = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
        assert c.get("/api/me", headers=same).status_code == 200


def test_host_and_origin_apply_with_tokens_too(rt: Target) -> None:
    with rt.client(rt.admin) as c:
        assert c.get("/api/status", headers={"Host": "evil.example"}).status_code == 421
        assert c.post("/api/changes/discard", headers={"Origin": "http://evil.example"}).status_code == 403
    with pytest.raises(InvalidStatus) as info:
        _ws(rt.url, rt.viewer, origin="http://evil.example")  # type: ignore[arg-type]
    assert info.value.response.status_code == 403


def test_allowed_hosts_are_checked_by_the_configuration() -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        ApiSettings(allowed_hosts=["http://x.example/"])
    assert ApiSettings(allowed_hosts=["x.example", "x.example:8443", "[fd00::1]:80"]).allowed_hosts


# ----------------------------------------------------------------------------- item 2: clips and the disk


def _clip_files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.mp4")} if folder.is_dir() else set()


@pytest.mark.node_only(reason=CLIPS_ON_THE_NODE)
def test_spans_inside_one_segment_share_one_cached_clip(rt: Target) -> None:
    seg = _segments(rt, 3)[1]
    start, end = float(seg["start"]), float(seg["end"])
    before = _clip_files(rt.data_dir / "clips")
    bodies = set()
    with rt.client(rt.viewer) as c:
        for i in range(6):  # distinct spans, all inside one segment
            a = start + (end - start) * (i + 1) / 20  # never on a boundary: neighbours may touch it
            r = c.get("/api/recordings/cam1/clip.mp4", params={"start": a, "end": a + 0.3 + i / 100})
            assert r.status_code == 200, r.text
            assert float(r.headers["x-clip-start"]) == pytest.approx(start, abs=1e-3)
            assert float(r.headers["x-clip-end"]) == pytest.approx(end, abs=1e-3)
            bodies.add(r.content)
    assert len(bodies) == 1 and next(iter(bodies))[4:8] == b"ftyp"
    assert len(_clip_files(rt.data_dir / "clips") - before) == 1


@pytest.mark.node_only(reason=CLIPS_ON_THE_NODE)
def test_clip_cache_is_capped_in_bytes(rt: Target, tmp_path: Path) -> None:
    segs = _segments(rt, 8)[:8]
    sizes = sorted(int(s["size"]) for s in segs[:4])
    # room for the two biggest one-segment clips and a little: never for three, never for all eight
    cap_mb = (sizes[-1] + sizes[-2] + sizes[0] // 2) / MIB
    clips = tmp_path / "clips"
    with _server(rt, ApiSettings(clip_cache_mb=cap_mb), data_dir=tmp_path) as server, \
            _viewer(rt, server) as c:
        made: list[set[str]] = []
        for seg in segs[:4]:
            before = _clip_files(clips)
            mid = (float(seg["start"]) + float(seg["end"])) / 2
            r = c.get("/api/recordings/cam1/clip.mp4", params={"start": mid, "end": mid + 0.1})
            assert r.status_code == 200, r.text
            made.append(_clip_files(clips) - before)
            total = sum(p.stat().st_size for p in clips.glob("*.mp4"))
            assert total <= cap_mb * MIB, (total, cap_mb * MIB)
        kept = _clip_files(clips)
        assert 1 <= len(kept) <= 2, kept
        assert made[-1] <= kept and not made[0] & kept  # the least recently used went first
        # a span bigger than the whole cache is refused, not written
        r = c.get("/api/recordings/cam1/clip.mp4",
                  params={"start": float(segs[0]["start"]) + 0.1, "end": float(segs[-1]["end"]) - 0.1})
        assert r.status_code == 413 and "clip_cache_mb" in r.text
        assert _clip_files(clips) == kept


@pytest.mark.node_only(reason=CLIPS_ON_THE_NODE)
def test_concurrent_exports_per_token_are_capped(rt: Target, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import camfleet.api.clips as clips_module

    real: Callable[..., Any] = clips_module.export_clip
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def slow_export(*args: Any, **kwargs: Any) -> Any:
        entered.release()
        gate.wait(10)  # held until the test has seen the third request refused
        return real(*args, **kwargs)

    monkeypatch.setattr(clips_module, "export_clip", slow_export)
    segs = _segments(rt, 4)
    results: list[int] = []

    def fetch(seg: dict[str, Any]) -> None:
        mid = (float(seg["start"]) + float(seg["end"])) / 2
        with _viewer(rt, server) as c:
            results.append(c.get("/api/recordings/cam1/clip.mp4", params={"start": mid, "end": mid + 0.1})
                           .status_code)

    with _server(rt, ApiSettings(max_exports_per_token=2), data_dir=tmp_path) as server:
        threads = [threading.Thread(target=fetch, args=(seg,)) for seg in segs[:2]]
        try:
            for th in threads:
                th.start()
            for _ in threads:
                assert entered.acquire(timeout=10), "the exports did not start"
            mid = (float(segs[2]["start"]) + float(segs[2]["end"])) / 2
            with httpx.Client(base_url=server.url, timeout=5) as c:
                third = c.get("/api/recordings/cam1/clip.mp4", params={"start": mid, "end": mid + 0.1},
                              headers={"Authorization": f"Bearer {rt.viewer}"})
                assert third.status_code == 429, third.status_code
                assert "max_exports_per_token" in third.text and third.headers["retry-after"]
        finally:
            gate.set()
            for th in threads:
                th.join(20)
        assert results == [200, 200]
        ctx = server.app.state.ctx
        assert ctx.export_slots.held("test-viewer") == 0 and len(ctx.export_slots) == 0
    assert len(clips_module._locks) == 0  # no lock left behind per clip name


@pytest.mark.node_only(reason=CLIPS_ON_THE_NODE)
def test_an_export_never_crosses_the_storage_floor(rt: Target, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import camfleet.api.clips as clips_module

    seg = _segments(rt, 3)[2]
    # the recordings' disk is at its floor: a clip would make retention delete recordings
    monkeypatch.setattr(clips_module, "disk_free_bytes", lambda path: 0, raising=False)
    with _server(rt, ApiSettings(), data_dir=tmp_path) as server, _viewer(rt, server) as c:
        mid = (float(seg["start"]) + float(seg["end"])) / 2
        r = c.get("/api/recordings/cam1/clip.mp4", params={"start": mid, "end": mid + 0.1})
        assert r.status_code == 507 and "min_free_mb" in r.text
    assert _clip_files(tmp_path / "clips") == set()


def test_storage_floor_deletes_clips_before_recordings(tmp_path: Path) -> None:
    from camfleet.recording import RetentionManager
    from camfleet.store import Store

    config = load_config_text(f"""
data_dir: {tmp_path}
storage: {{min_free_mb: 1}}
pipelines: {{p: [motion: {{}}]}}
cameras:
  cam: {{pipeline: p, sources: [{{url: 'synthetic://cam', roles: [detect, record]}}],
        record: {{enabled: true}}}}
""")
    store = Store.open(f"sqlite:///{tmp_path}/db.sqlite")
    try:
        now = time.time()
        for i in range(3):
            rel = f"cam/seg{i}.mp4"
            (config.recordings_path / "cam").mkdir(parents=True, exist_ok=True)
            (config.recordings_path / rel).write_bytes(b"x" * 100)
            store.add_segment(SegmentRecord(camera="cam", path=rel, start=now - 100 + i * 10,
                                            end=now - 90 + i * 10, size=100, frames=1, keyframes=1))
        clips = tmp_path / "clips"
        clips.mkdir()
        for i in range(2):
            (clips / f"cam-{i}-{i}.mp4").write_bytes(b"c" * (600 * 1024))
        start_clip_bytes = 2 * 600 * 1024

        def free(path: Path) -> int:  # 0.2 MiB free, plus whatever was deleted since
            clip_bytes = sum(p.stat().st_size for p in clips.glob("*.mp4"))
            seg_bytes = sum(p.stat().st_size for p in config.recordings_path.rglob("*.mp4"))
            return int(0.2 * MIB) + (start_clip_bytes - clip_bytes) + (300 - seg_bytes)

        report = RetentionManager(store, config, free_bytes=free).run_once(now)
        assert report.below_floor
        assert report.deleted == [], [d.path for d in report.deleted]
        assert len(store.query_segments(camera="cam")) == 3
        assert list(clips.glob("*.mp4")) == []
    finally:
        store.close()


# ----------------------------------------------------------------------------- item 3: segment files


def test_only_indexed_segment_files_are_served(rt: Target) -> None:
    seg = _segments(rt, 2)[0]
    rec = rt.recordings_path
    real = rec / str(seg["path"])
    (rec / "cam1" / "not-indexed.mp4").write_bytes(real.read_bytes())
    (rec / "notes.txt").write_text("private")
    with rt.client(rt.viewer) as c:
        assert c.get(f"/api/recordings/files/{seg['path']}").status_code == 200
        for path in ("cam1/not-indexed.mp4", "notes.txt", str(seg["path"]) + ".part", "x" * 2000):
            r = c.get(f"/api/recordings/files/{path}")
            assert r.status_code == 404, (path[:40], r.status_code)
            assert b"private" not in r.content


@pytest.mark.parametrize(("data_dir", "recordings_dir"), [
    ("/srv/cf/data", "/"), ("/srv/cf/data", "//"), ("/srv/cf/data", "/srv/cf"),
    ("/srv/cf/data", "/srv/cf/data"), ("/srv/cf/data", "."), ("/srv/cf/data", ".."),
    ("/srv/cf/data", "sub/../.."),
])
def test_a_recordings_dir_containing_the_data_dir_is_refused(data_dir: str, recordings_dir: str) -> None:
    text = f"data_dir: {data_dir}\nstorage:\n  recordings_dir: '{recordings_dir}'\n"
    with pytest.raises(ConfigError) as info:
        load_config_text(text, source="node.yaml")
    (issue,) = info.value.issues
    assert issue.path == "storage.recordings_dir" and issue.line == 3, issue
    assert "data directory" in issue.message or "root" in issue.message
    assert "node.yaml:3:" in str(info.value)


def test_a_relative_data_dir_is_resolved_beside_the_file(tmp_path: Path) -> None:
    from camfleet.config import load_config

    node = tmp_path / "node.yaml"
    node.write_text(f"data_dir: data\nstorage: {{recordings_dir: '{tmp_path}'}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(node)
    assert f"{node}:2:" in str(info.value) and "contains the data directory" in str(info.value)
    node.write_text(f"data_dir: data\nstorage: {{recordings_dir: '{tmp_path / 'rec'}'}}\n")
    assert load_config(node).recordings_path == tmp_path / "rec"


def test_a_recordings_dir_beside_or_inside_the_data_dir_is_fine() -> None:
    for rec in ("recordings", "../footage", "/srv/cf/rec", "/srv/cf/data/rec"):
        load_config_text(f"data_dir: /srv/cf/data\nstorage: {{recordings_dir: '{rec}'}}\n")


# ----------------------------------------------------------------------------- item 6: bounded costs


@pytest.mark.node_only(reason="counts the SQL of the in-process node's store; the coordinator's ready asks "
                              "its database with the same ping (FleetStore.ping: SELECT 1)")
def test_ready_is_constant_time(rt: Target) -> None:
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lower())

    event.listen(rt.store.engine, "before_cursor_execute", seen)
    try:
        with httpx.Client(base_url=rt.url, timeout=10) as anon:  # public: no token
            r = anon.get("/api/ready")
    finally:
        event.remove(rt.store.engine, "before_cursor_execute", seen)
    assert r.status_code == 200 and r.json()["checks"] == {"node": True, "store": True}
    assert statements, "the store was not asked at all"
    for sql in statements:
        assert "count(" not in sql and " from " not in sql, sql  # no table is read: SELECT 1


def test_recordings_are_paged(rt: Target) -> None:
    segs = _segments(rt, 3)
    with rt.client(rt.viewer) as c:
        first = c.get("/api/recordings", params={"camera": "cam1", "limit": 1})
        assert first.status_code == 200 and len(first.json()) == 1
        assert first.json()[0]["path"] == segs[0]["path"]
        link = first.headers["link"]
        m = re.fullmatch(r'<(/api/recordings\?[^>]+)>; rel="next"', link)
        assert m is not None, link
        second = c.get(m.group(1)).json()
        assert len(second) == 1 and second[0]["path"] == segs[1]["path"]
        assert c.get("/api/recordings", params={"limit": 10_001}).status_code == 422
        assert c.get("/api/recordings", params={"limit": 0}).status_code == 422
        assert c.get("/api/recordings", params={"offset": -1}).status_code == 422
        whole = c.get("/api/recordings", params={"camera": "cam1"})  # existing clients: a default page
        assert whole.status_code == 200 and len(whole.json()) >= 3


def test_websockets_per_token_are_capped(rt: Target) -> None:
    with _server(rt, ApiSettings(max_ws_per_token=2)) as server:
        with _ws(server.url, rt.viewer) as a, _ws(server.url, rt.viewer) as b:
            for ws in (a, b):
                wait_ws(ws, lambda m: m["type"] == "snapshot", 10)
            with _ws(server.url, rt.viewer) as extra, pytest.raises(ConnectionClosed) as info:
                extra.recv(timeout=5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            assert "max_ws_per_token" in info.value.rcvd.reason
            with _ws(server.url, rt.admin) as other:  # another token has its own share
                wait_ws(other, lambda m: m["type"] == "snapshot", 10)
            a.close()
            deadline = time.monotonic() + 10  # the server notices the close on its own loop
            while server.app.state.ctx.ws_slots.held("test-viewer") > 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            with _ws(server.url, rt.viewer) as again:  # a freed slot can be used again
                wait_ws(again, lambda m: m["type"] == "snapshot", 10)
        deadline = time.monotonic() + 10
        while len(server.app.state.ctx.ws_slots) and time.monotonic() < deadline:
            time.sleep(0.05)  # the closes reach the server's loop after the client returns
        assert len(server.app.state.ctx.ws_slots) == 0  # every slot is given back


def test_docs_need_a_token_and_no_cdn(rt: Target, open_server: ApiServer) -> None:
    with httpx.Client(base_url=rt.url, timeout=10) as anon:
        assert anon.get("/api/docs").status_code == 401
        assert anon.get("/api/openapi.json").status_code == 401
    for client in (rt.client(rt.viewer), rt.client(cookies={"camfleet_token": rt.viewer}),
                   httpx.Client(base_url=open_server.url, timeout=10)):
        with client as c:
            page = c.get("/api/docs")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            assert c.get("/api/openapi.json").json()["info"]["title"].startswith("camfleet")
    html = page.text
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "the docs page loads from another host"
    assets = re.findall(r"(?:src|href)=\"(/[^\"]+)\"", html)
    assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
    with httpx.Client(base_url=rt.url, timeout=10) as anon:
        for asset in assets:
            r = anon.get(asset)
            assert r.status_code == 200 and len(r.content) > 100, asset
            assert b"//cdn" not in r.content and b"unpkg.com" not in r.content, asset
        assert anon.get("/api/docs/assets/..%2Findex.html").status_code == 404
        assert anon.get("/api/docs/assets/index.j2").status_code == 404


# ----------------------------------------------------------------------------- fuzzing: Host, Origin


@pytest.mark.parametrize(("header", "check"), [
    ("Host: evil.example", "foreign_host_is_refused"),
    ("Origin: http://evil.example", "cross_site_write_is_refused"),
])
@pytest.mark.node_only(reason="the coordinator runs the same HostGuard middleware (api/hosts.py); its "
                              "paths are checked by test_dns_rebinding_host_is_refused_in_open_mode[fleet] "
                              "and test_cross_site_writes_are_refused_reads_are_not[fleet]")
def test_schemathesis_with_hostile_host_and_origin(open_server: ApiServer, tmp_path: Path, header: str,
                                                  check: str) -> None:
    """Every operation of the schema, fuzzed in open mode with a hostile Host or Origin, is refused."""
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(open_server.app.openapi()))  # the schema itself needs a proper Host
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.st_hostile_checks",
           "PYTHONPATH": os.pathsep.join([str(root), str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")), "run", str(schema), "--url", open_server.url,
        "--checks", check, "--max-examples", "3", "--seed", "1", "--workers", "1", "--max-time", "20",
        "--request-timeout", "10", "--phases", "examples,fuzzing", "--exclude-path-regex", "mjpeg",
        "-H", header, "--suppress-health-check", "all", "--no-color",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env, cwd=root)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m is not None and m.group(1) == m.group(2) and int(m.group(1)) > 20, out[-2000:]


@pytest.mark.node_only(reason="the coordinator's reads of a staged camera's masked URL are checked by "
                              "test_stage_validate_discard_and_mask[fleet]; this fuzzes the node's reads")
def test_schemathesis_never_returns_a_query_string_credential(open_server: ApiServer, tmp_path: Path) -> None:
    """Every read of the schema, fuzzed with a camera whose URL carries ``?password=``, keeps it masked."""
    secret = "fuzzS3cret" + os.urandom(4).hex()
    url = f"rtsp://127.0.0.1:9/stream?user=admin&password={secret}&channel=1"
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(open_server.app.openapi()))
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.support.st_hostile_checks",
           "CAMFLEET_FUZZ_SECRET": secret,
           "PYTHONPATH": os.pathsep.join([str(root), str(root / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")), "run", str(schema), "--url", open_server.url,
        "--checks", "query_secret_never_returned", "--include-method", "GET", "--max-examples", "3",
        "--seed", "1", "--workers", "1", "--max-time", "20", "--request-timeout", "10",
        "--phases", "examples,fuzzing", "--exclude-path-regex", "mjpeg", "--suppress-health-check", "all",
        "--no-color",
    ]
    with httpx.Client(base_url=open_server.url, timeout=20) as admin:  # open mode: loopback is admin
        r = admin.put("/api/cameras/qfuzz", json={"sources": [{"url": url, "roles": ["detect"]}]})
        assert r.status_code == 200 and secret not in r.text, r.text
        try:
            assert secret not in admin.get("/api/changes").text
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env,
                                  cwd=root)
        finally:
            admin.post("/api/changes/discard")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m is not None and m.group(1) == m.group(2) and int(m.group(1)) > 10, out[-2000:]


# ----------------------------------------------------------------------------- item 6: live view vs status


def test_live_view_pool_is_bounded() -> None:
    from camfleet.api.live import LiveFrames, NoFrame

    async def scenario() -> list[BaseException | tuple[bytes, int]]:
        live = LiveFrames(threads=1, max_pending=2)
        try:
            # no such ring: each read waits out its timeout, holding its place in the pool
            return await asyncio.gather(*(live.jpeg_async("no-such-camera", 1.0) for _ in range(6)),
                                        return_exceptions=True)
        finally:
            live.close()

    started = time.monotonic()
    results = asyncio.run(scenario())
    busy = [r for r in results if isinstance(r, NoFrame) and "busy" in str(r)]
    assert len(busy) == 4, results  # refused at once, not queued behind the others
    assert all(isinstance(r, NoFrame) for r in results)
    assert time.monotonic() - started < 5


def test_status_answers_while_live_viewers_stream(rt: Target) -> None:
    stop = threading.Event()
    frames = [0] * 10

    def viewer(i: int) -> None:
        with rt.client(rt.viewer) as c, c.stream("GET", "/api/cameras/cam1/mjpeg", params={"fps": 15}) as r:
            for chunk in r.iter_bytes():
                frames[i] += chunk.count(b"--camfleetframe")
                if stop.is_set():
                    return

    threads = [threading.Thread(target=viewer, args=(i,), daemon=True) for i in range(len(frames))]
    for th in threads:
        th.start()
    try:
        deadline = time.monotonic() + 20
        while sum(1 for n in frames if n >= 2) < len(frames) and time.monotonic() < deadline:
            time.sleep(0.1)  # the viewers run in their own threads: poll their counters
        assert all(n >= 2 for n in frames), frames
        with rt.client(rt.viewer) as c:
            for _ in range(5):
                began = time.monotonic()
                assert c.get("/api/status").status_code == 200
                assert time.monotonic() - began < 2.0
    finally:
        stop.set()
        for th in threads:
            th.join(10)


@pytest.mark.node_only(reason="the coordinator serves the same docs router and assets (routers/docs.py), "
                              "whose token and no-CDN rules test_docs_need_a_token_and_no_cdn[fleet] checks")
def test_docs_render_offline_in_a_real_browser(rt: Target) -> None:
    """Swagger UI renders every operation in headless Chromium with nothing but this server reachable."""
    from playwright.sync_api import expect, sync_playwright

    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail(f"{chromium} is missing: apt-get install chromium (the docs test needs a real browser)")
    foreign: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "camfleet_token", "value": rt.viewer, "url": rt.url}])

            def offline(route: Any) -> None:  # the machine is offline: only this server answers
                if route.request.url.startswith(rt.url + "/"):
                    route.continue_()
                else:
                    foreign.append(route.request.url)
                    route.abort()

            context.route("**/*", offline)
            page = context.new_page()
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.goto(rt.url + "/api/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=20_000)
            assert page.locator(".opblock").count() >= 15
            expect(page.locator(".info .title")).to_contain_text("camfleet")
        finally:
            browser.close()
    assert foreign == [], foreign
    assert problems == [], problems
