"""Benchmark: the camfleet API (status, events, WebSocket fan-out) against a naive FastAPI baseline.

Run from the repository root::

    .venv/bin/python bench/api.py --quick          # short phases (< 60 s)
    .venv/bin/python bench/api.py                  # longer phases, more events
    .venv/bin/python bench/api.py --json out.json  # raw results (default artifacts/bench-api.json)
    .venv/bin/python bench/api.py --fleet --quick  # a fleet's coordinator (6 cameras, 3 agents) vs the node
    .venv/bin/python bench/api.py --fleet          # 96 cameras on 3 agents via the coordinator vs the node

``--fleet`` measures the single node (camfleet only, HTTP only) and then the fleet in the same run:
status and events through a coordinator of a real fleet (3 NATS servers, 2 coordinators, 3 agents
with real synthetic cameras, ``bench/api_fleet.py``), and MJPEG through the coordinator against
directly from the node.

Each server runs in its own process (``spawn``), served by uvicorn on loopback,
and is measured from this process the same way; see ``METHOD`` below (also
printed and stored in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import platform
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import psutil
import websockets
from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect

from _benchutil import cell, cpu_model, cpu_s, summary

CAMERAS = 32
WS_CLIENTS = 50
PAD_BYTES = 16_000  # a WebSocket message the size of a 32-camera status snapshot (~16-40 kB)
VARIANTS = ("camfleet", "naive")
FLEET_LABELS = {"camfleet": "node alone, 32 cams", "beside": "node beside the fleet",
                "fleet": "fleet coordinator"}
LABELS = {"camfleet": "camfleet.api", "naive": "(b) naive FastAPI"}

METHOD = {
    "data": (
        f"{CAMERAS} cameras. Status: a real camfleet.runtime.NodeStatus for {CAMERAS} cameras, each "
        "with ingest, pipeline and recorder ProcessStatus (8 metrics each), plus 2 detectors, returned by "
        "a NodeControl stand-in (a running Node returns its latest snapshot the same way). Events: "
        "N per camera (--events-per-camera) with labels person/car/cat/dog, 0-2 zones, starts spread "
        "over a day, written with camfleet.store.Store.upsert_events into a real SQLite (WAL) store"
    ),
    "camfleet": (
        "camfleet.api.create_app(...) as shipped, behind camfleet.api.ApiServer (uvicorn, one worker): "
        "bearer token checked against the store on every request; /api/status served from a snapshot "
        "cached 0.5 s and pre-encoded; /api/events through Store.query_events + count_events (indexed "
        "tables, pooled connections); WebSocket messages from the node's listener into a bounded queue "
        "per client (256), one sender task per client"
    ),
    "naive": (
        "the baseline a first version would be: a FastAPI app, same uvicorn settings, same bearer "
        "check but with a new sqlite3 connection per request; /api/status reads the node's status JSON "
        "file (what the node writes every second for `camfleet status`), parses it and returns it; "
        "/api/events opens a new sqlite3 connection per request on the same rows in a table without "
        "indexes and runs the same SELECT ... ORDER BY start DESC LIMIT/OFFSET and COUNT(*); the "
        "WebSocket broadcast is one task awaiting send_text() on each client in turn, message by message"
    ),
    "http": (
        "closed loop from this process: C threads, each with its own keep-alive httpx.Client, send "
        "requests back to back for --duration s after a warm-up of 20 requests; latency = wall time of "
        "one request (perf_counter around client.get, response read). Events requests cycle through "
        "camera=camN&limit=50 (a UI page of one camera) and label=person&limit=50&offset=100. req/s = "
        "completed requests / duration. CPU% = server process user+system CPU over the run / duration. "
        "The client threads share the machine's cores (and this process's GIL) with the server: at "
        "concurrency 8 on a 2-core machine the client is part of what is measured"
    ),
    "websocket": (
        f"{WS_CLIENTS} clients (websockets asyncio client, one event loop in this process) connected "
        f"to /api/ws; the server process publishes {PAD_BYTES} B JSON messages at --ws-rate per second "
        "from a thread through the same path as the node's events (camfleet: NodeControl listener -> hub; "
        "naive: one broadcaster task takes the messages in order and awaits send_text() on every client "
        "in turn); latency = "
        "client receive time.time() - the server's time.time() stamped at publish (same machine, same "
        "clock). 'stalled': one more client completes the handshake and never reads (socket receive "
        "buffer 4 KiB), as a frozen browser tab would, and the run publishes more (--stall-rate/s, "
        "--stall-count messages: 4.8 MB in --quick, past what the kernel's socket buffers absorb, "
        "tcp_wmem max 4 MiB here); 'recv' = "
        f"messages received / expected over the {WS_CLIENTS} reading clients. camfleet also pushes its "
        "periodic status snapshot (32 cameras, ~40 kB, every second) to every client during the runs; "
        "the naive server does not"
    ),
}


# --------------------------------------------------------------------------- data


def status_for(cameras: int) -> Any:
    """A real NodeStatus for ``cameras`` cameras with three processes each and two detectors."""
    from camfleet.runtime.control import CameraStatus, NodeStatus, ProcessStatus

    now = time.time()
    metrics = {"frames": 1234.0, "fps": 5.0, "skipped": 0.1, "queue": 0.0, "motion": 0.3,
               "detect_ms": 9.1, "events": 3.0, "restarts": 0.0}
    cams = {}
    for i in range(cameras):
        name = f"cam{i + 1}"
        procs = {kind: ProcessStatus(name=f"{name}/{kind}", kind=kind, state="healthy", pid=10_000 + 3 * i,  # type: ignore[arg-type]
                                     heartbeat_age_s=0.2, cpu_percent=7.5, rss_mb=80.0, metrics=dict(metrics))
                 for kind in ("ingest", "pipeline", "recorder")}
        cams[name] = CameraStatus(name=name, state="healthy", decode_fps=15.0, processed_fps=5.0,
                                  skipped_fps=0.0, detector_rps=2.5, inference_ms=9.0, cpu_percent=22.5,
                                  rss_mb=240.0, processes=procs)
    dets = {f"cpu-{i}": ProcessStatus(name=f"cpu-{i}", kind="detector", state="healthy", pid=9000 + i,
                                      cpu_percent=80.0, rss_mb=150.0, metrics=dict(metrics))
            for i in range(2)}
    return NodeStatus(node="bench", pid=os.getpid(), started_at=now - 3600, at=now, cameras=cams,
                      detectors=dets)


def make_data(folder: Path, per_camera: int) -> dict[str, Any]:
    """The camfleet store (real schema, indexes, a token) and the naive database with the same rows."""
    from camfleet.store import EventRecord, Store

    store = Store.open(f"sqlite:///{folder / 'camfleet.db'}")
    token = store.create_token("bench", "admin")
    labels = ["person", "car", "cat", "dog"]
    t0 = time.time() - 86_400
    events = []
    for c in range(CAMERAS):
        for k in range(per_camera):
            start = t0 + (k * CAMERAS + c) * (86_400 / (per_camera * CAMERAS))
            zones = ["left", "door"][: (k % 3)]
            events.append(EventRecord(id=f"ev-{c}-{k}", camera=f"cam{c + 1}", label=labels[(k + c) % 4],
                                      start=start, end=start + 8.0, top_score=0.5 + (k % 50) / 100,
                                      zones=zones, data={"track_id": k, "best_seq": k * 3}))
    for i in range(0, len(events), 2000):
        store.upsert_events(events[i:i + 2000])
    store.close()
    naive = sqlite3.connect(folder / "naive.db")
    naive.execute('CREATE TABLE events (id TEXT, camera TEXT, label TEXT, start REAL, "end" REAL, '
                  "top_score REAL, zones TEXT, snapshot TEXT, retained INTEGER, data TEXT)")
    naive.executemany("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?)",
                      [(e.id, e.camera, e.label, e.start, e.end, e.top_score, json.dumps(e.zones), None, 0,
                        json.dumps(e.data)) for e in events])
    naive.execute("CREATE TABLE tokens (hash TEXT, role TEXT)")
    naive.execute("INSERT INTO tokens VALUES (?, 'admin')", (hashlib.sha256(token.encode()).hexdigest(),))
    naive.commit()
    naive.close()
    return {"token": token, "events": len(events)}


# --------------------------------------------------------------------------- servers (child processes)


class _Node:
    """A NodeControl stand-in: a fixed status snapshot, a configuration, listeners."""

    def __init__(self, status: Any, config: Any) -> None:
        self._status = status
        self._config = config
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def status(self) -> Any:
        return self._status

    def current_config(self) -> Any:
        return self._config

    def apply_config(self, config: Any) -> Any:
        from camfleet.runtime.control import ReloadResult

        return ReloadResult(ok=False, errors=["read-only benchmark node"])

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener)


def _naive_app(folder: Path, status_file: Path) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        app.state.loop = asyncio.get_running_loop()
        app.state.outbox = asyncio.Queue()

        async def broadcaster() -> None:  # messages in order, each to every client in turn
            while True:
                text = await app.state.outbox.get()
                for client in list(clients):
                    try:
                        await client.send_text(text)
                    except Exception:
                        with contextlib.suppress(ValueError):
                            clients.remove(client)

        task = asyncio.create_task(broadcaster())
        yield
        task.cancel()

    app = FastAPI(lifespan=lifespan)
    clients: list[WebSocket] = []
    app.state.clients = clients

    def check(request: Request) -> None:
        header = request.headers.get("authorization", "")
        digest = hashlib.sha256(header.removeprefix("Bearer ").encode()).hexdigest()
        db = sqlite3.connect(folder / "naive.db")
        try:
            row = db.execute("SELECT role FROM tokens WHERE hash = ?", (digest,)).fetchone()
        finally:
            db.close()
        if row is None:
            raise HTTPException(401)

    @app.get("/api/status")
    def status(request: Request) -> Any:
        check(request)
        return json.loads(status_file.read_text())

    @app.get("/api/events")
    def events(request: Request, camera: str | None = None, label: str | None = None, limit: int = 50,
               offset: int = 0) -> Any:
        check(request)
        where, args = [], []
        if camera:
            where.append("camera = ?")
            args.append(camera)
        if label:
            where.append("label = ?")
            args.append(label)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        db = sqlite3.connect(folder / "naive.db")
        try:
            rows = db.execute(f"SELECT * FROM events {clause} ORDER BY start DESC LIMIT ? OFFSET ?",
                              [*args, limit, offset]).fetchall()
            total = db.execute(f"SELECT count(*) FROM events {clause}", args).fetchone()[0]
        finally:
            db.close()
        cols = ["id", "camera", "label", "start", "end", "top_score", "zones", "snapshot", "retained", "data"]
        items = [dict(zip(cols, r, strict=True)) for r in rows]
        for item in items:
            item["zones"] = json.loads(item["zones"])
            item["data"] = json.loads(item["data"])
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.websocket("/api/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        clients.append(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            with contextlib.suppress(ValueError):
                clients.remove(websocket)

    return app


def serve(variant: str, folder: str, conn: Any) -> None:
    """A server process: build the app, report its URL, publish WebSocket messages on request."""
    try:
        from camfleet.api import ApiServer, create_app
        from camfleet.config import ApiSettings
        from camfleet.runtime.default import default_config
        from camfleet.store import Store

        data = Path(folder)
        status = status_for(CAMERAS)
        node = _Node(status, default_config(data, cameras=CAMERAS, width=320, height=240, fps=10))
        publish: Callable[[dict[str, Any]], None]
        store = None
        if variant == "camfleet":
            store = Store.open(f"sqlite:///{data / 'camfleet.db'}")
            # one token opens every client of the fan-out (and the stalled one): lift the per-token cap
            app = create_app(node, store, ApiSettings(max_ws_per_token=WS_CLIENTS + 1), data_dir=data,
                             recordings_dir=data / "rec")

            def publish(message: dict[str, Any]) -> None:
                for listener in list(node.listeners):
                    listener(message)
        else:
            status_file = data / "status.json"
            status_file.write_text(json.dumps(status.to_json()))
            app = _naive_app(data, status_file)

            def publish(message: dict[str, Any]) -> None:
                text = json.dumps(message)
                app.state.loop.call_soon_threadsafe(app.state.outbox.put_nowait, text)

        server = ApiServer(app, "127.0.0.1", 0)
        server.start()
        conn.send({"url": server.url, "pid": os.getpid()})
        pad = "x" * PAD_BYTES
        while True:
            cmd = conn.recv()
            if cmd[0] == "stop":
                break
            if cmd[0] == "publish":
                _, rate, count = cmd
                period = 1.0 / rate
                next_at = time.perf_counter()
                for i in range(count):
                    publish({"type": "bench", "i": i, "sent_at": time.time(), "pad": pad})
                    next_at += period
                    time.sleep(max(0.0, next_at - time.perf_counter()))  # the publish rate itself
                conn.send(("published", count))
        server.stop(5)
        if store is not None:
            store.close()
    except Exception:
        conn.send({"error": traceback.format_exc()})


# --------------------------------------------------------------------------- load


def http_run(url: str, token: str, paths: list[str], conc: int, duration: float) -> dict[str, Any]:
    """``conc`` threads, each a keep-alive client, requesting ``paths`` in turn for ``duration`` s."""
    lat: list[list[float]] = [[] for _ in range(conc)]
    errors: list[str] = []
    stop_at = [0.0]

    def begin() -> None:  # runs once every client is warm, before any is released
        stop_at[0] = time.perf_counter() + duration

    go = threading.Barrier(conc + 1, action=begin)

    def worker(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            for i in range(20):
                c.get(paths[i % len(paths)])
            go.wait()
            i = k
            while time.perf_counter() < stop_at[0]:
                path = paths[i % len(paths)]
                i += 1
                t = time.perf_counter()
                r = c.get(path)
                dt = time.perf_counter() - t
                if r.status_code != 200:
                    errors.append(f"{path}: {r.status_code}")
                    continue
                lat[k].append(dt)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conc)]
    for t in threads:
        t.start()
    go.wait()
    started = time.perf_counter()
    for t in threads:
        t.join(duration + 60)
    elapsed = time.perf_counter() - started
    samples = [x for per in lat for x in per]
    return {"summary_ms": summary(samples, 1000.0), "req_s": len(samples) / elapsed,
            "errors": len(errors), "first_error": errors[0] if errors else None}


def _stalled_socket(url: str, token: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays small
    sock.settimeout(10)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/ws?token={token} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  f"Authorization: Bearer {token}\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    return sock


def ws_run(url: str, token: str, conn: Any, rate: float, count: int, stalled: bool) -> dict[str, Any]:
    """Fan-out latency to ``WS_CLIENTS`` clients of ``count`` messages published at ``rate``/s."""
    ws_url = url.replace("http://", "ws://") + f"/api/ws?token={token}"
    lat: list[float] = []
    got = [0] * WS_CLIENTS

    async def main() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        conns = [await websockets.connect(ws_url, additional_headers=headers, max_size=None,
                                          open_timeout=20, ping_interval=None) for _ in range(WS_CLIENTS)]
        stall = _stalled_socket(url, token) if stalled else None

        async def reader(k: int, ws: Any) -> None:
            while got[k] < count:
                raw = await ws.recv()
                now = time.time()
                if '"type":"bench"' not in raw[:40] and '"type": "bench"' not in raw[:40]:
                    continue
                lat.append(now - json.loads(raw)["sent_at"])
                got[k] += 1

        tasks = [asyncio.create_task(reader(k, ws)) for k, ws in enumerate(conns)]
        await asyncio.sleep(0.5)  # let the server register every client before publishing
        conn.send(("publish", rate, count))
        await asyncio.wait(tasks, timeout=count / rate + 5)
        for t in tasks:
            t.cancel()
        for ws in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2)
        if stall is not None:
            stall.close()

    asyncio.run(main())
    reply = conn.recv()
    assert reply[0] == "published", reply
    return {"summary_ms": summary(lat, 1000.0), "received": sum(got), "expected": WS_CLIENTS * count,
            "stalled": stalled}


# --------------------------------------------------------------------------- main


def _start_node(ctx: Any, tmp: str) -> tuple[Any, Any, str, psutil.Process]:
    """The camfleet single-node server process: (process, pipe, URL, its psutil handle)."""
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=serve, args=("camfleet", tmp, child), daemon=True)
    proc.start()
    if not parent.poll(60):
        proc.kill()
        raise RuntimeError("camfleet: the server did not start")
    hello = parent.recv()
    if "error" in hello:
        proc.kill()
        raise RuntimeError(hello["error"])
    return proc, parent, hello["url"], psutil.Process(hello["pid"])


def _main_fleet(args: argparse.Namespace) -> int:
    """``--fleet``: single node at 32 cameras, then the fleet's coordinator, in one run; table and JSON."""
    import api_fleet

    quick = args.quick
    duration = args.duration or (1.0 if quick else 8.0)
    per_camera = args.events_per_camera or (300 if quick else 1000)
    fleet_cameras = args.fleet_cameras or (6 if quick else 96)
    streams = args.mjpeg_streams or (3 if quick else 12)
    mjpeg_s = args.mjpeg_seconds or (3.0 if quick else 20.0)
    concs = [1, 8]
    t0 = time.perf_counter()
    print(f"api bench, fleet mode: single node {CAMERAS} cameras vs fleet {fleet_cameras} cameras on 3 "
          f"agents ({api_fleet.WIDTH}x{api_fleet.HEIGHT} at {api_fleet.FPS} fps synthetic, no detector); "
          f"{per_camera} events/camera; HTTP {duration:g} s per run at concurrency {concs}; MJPEG "
          f"{streams} streams x {mjpeg_s:g} s; {os.cpu_count()} CPUs", flush=True)
    load = os.getloadavg()
    if load[0] > 0.5:
        print(f"note: load average {load[0]:.2f} before the start: other work shares the CPUs", flush=True)
    results: dict[str, Any] = {"http": []}

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    # the fleet's processes start (tens of seconds of imports) while the single node is measured;
    # quick: one NATS server instead of a 3-server cluster, for time
    launched = api_fleet.launch(fleet_cameras, per_camera, nats_servers=1 if quick else 3)
    handed = False
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        data = make_data(Path(tmp), per_camera)
        proc, pipe, url, server = _start_node(mp.get_context("spawn"), tmp)
        ev_paths = [f"/api/events?camera=cam{i % CAMERAS + 1}&limit=50" for i in range(CAMERAS)]
        ev_paths += ["/api/events?label=person&limit=50&offset=100"] * 4

        def node_runs(variant: str) -> None:
            for endpoint, paths in (("status", ["/api/status"]), ("events", ev_paths)):
                for conc in concs:
                    cpu0 = cpu_s(server)
                    r = http_run(url, data["token"], paths, conc, duration)
                    r["cpu_pct"] = 100 * (cpu_s(server) - cpu0) / duration
                    r.update(variant=variant, endpoint=endpoint, conc=conc)
                    results["http"].append(r)
                    s = r["summary_ms"]
                    say(f"  {FLEET_LABELS[variant]:<26} {endpoint:<7} c={conc}: p50 {_f(s['p50'])} ms, "
                        f"p99 {_f(s['p99'])} ms, {r['req_s']:.0f} req/s")

        try:
            node_runs("camfleet")
            # the full run measures the node again while the fleet's cameras run beside it (same machine
            # load as the coordinator's runs); quick leaves it out for time
            handed = True  # bench_fleet stops it, whatever happens
            fleet = api_fleet.bench_fleet(launched, fleet_cameras, duration, concs, streams, mjpeg_s,
                                          http_run, say, None if quick else lambda: node_runs("beside"))
            pipe.send(("stop",))
            proc.join(15)
        finally:
            if not handed:  # failed before the fleet's runs: it was launched all the same
                launched.fleet.stop()
                launched.tmp.cleanup()
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    results["http"] += fleet.pop("http")
    results["fleet"] = fleet
    _print_fleet_table(results, fleet_cameras)
    doc = {
        "bench": "api", "mode": "fleet", "method": METHOD | api_fleet.METHOD, "quick": quick,
        "cameras": CAMERAS, "fleet_cameras": fleet_cameras, "events_per_camera": per_camera,
        "duration_s": duration, "results": results, "elapsed_s": time.perf_counter() - t0,
        "loadavg_start": load, "loadavg_end": os.getloadavg(),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "fastapi": metadata.version("fastapi"), "uvicorn": metadata.version("uvicorn")},
    }
    path = args.json
    if path == Path("artifacts/bench-api.json"):  # the default: keep the single-node mode's file
        path = Path("artifacts/bench-api-fleet.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nraw results: {path} ({time.perf_counter() - t0:.0f} s)")
    return 0


def _print_fleet_table(results: dict[str, Any], fleet_cameras: int) -> None:
    fleet = results["fleet"]
    print(f"\nHTTP latency (ms), throughput, server CPU% of one core: single node ({CAMERAS} cameras; alone, "
          f"and beside the fleet's cameras) vs the fleet's coordinator ({fleet_cameras} cameras on 3 agents, "
          f"coordinator 1 = {fleet['served_by']})")
    labels = {v: FLEET_LABELS[v] for v in FLEET_LABELS if any(r["variant"] == v for r in results["http"])}
    head = f"{'endpoint':<8} {'conc':>4} | " + " | ".join(f"{labels[v]:<30}" for v in labels)
    print(head)
    print(f"{'':<8} {'':>4} | "
          + " | ".join(f"{'p50':>7} {'p99':>7} {'req/s':>7} {'CPU%':>5} " for _ in labels))
    print("-" * len(head))
    by = {(r["variant"], r["endpoint"], r["conc"]): r for r in results["http"]}
    for endpoint in ("status", "events"):
        for conc in sorted({r["conc"] for r in results["http"]}):
            cells = []
            for v in labels:
                r = by.get((v, endpoint, conc))
                if r is None:
                    cells.append(f"{'-':>30}")
                    continue
                s = r["summary_ms"]
                cells.append(f"{cell(s['p50'], 7, '.2f')} {cell(s['p99'], 7, '.2f')} "
                             f"{cell(r['req_s'], 7, '.0f')} {cell(r['cpu_pct'], 5, '.0f')} ")
            print(f"{endpoint:<8} {conc:>4} | " + " | ".join(cells))
    m = fleet.get("mjpeg")
    if m:
        a = m["added_ms"]
        print(f"\nMJPEG, {m['streams']} cameras read both ways for {m['seconds']:g} s "
              "(direct from the agent | through the coordinator)")
        print(f"frames received {m['frames_direct']} | {m['frames_through']}; added latency per frame "
              f"through the coordinator p50 {_f(a['p50'])} ms, p99 {_f(a['p99'])} ms (n={a['n']}); "
              f"coordinator CPU {m['coord_cpu_pct_per_stream']:.2f} % of one core per stream (idle "
              f"{m['coord_cpu_pct_idle']:.1f} %)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="short phases (< 60 s)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-api.json"), help="raw results")
    ap.add_argument("--duration", type=float, help="seconds of each HTTP run")
    ap.add_argument("--events-per-camera", type=int, help="events stored per camera")
    ap.add_argument("--ws-rate", type=float, default=20.0, help="WebSocket messages published per second")
    ap.add_argument("--ws-count", type=int, help="WebSocket messages per run")
    ap.add_argument("--stall-rate", type=float, default=50.0, help="messages/s of the stalled-client run")
    ap.add_argument("--stall-count", type=int, help="messages of the stalled-client run")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--skip-http", action="store_true", help="WebSocket runs only")
    ap.add_argument("--fleet", action="store_true",
                    help="the single node (camfleet, HTTP) against a real fleet's coordinator, and MJPEG "
                         "through the coordinator against direct")
    ap.add_argument("--fleet-cameras", type=int, help="fleet cameras over 3 agents (default 96, quick 6)")
    ap.add_argument("--mjpeg-streams", type=int, help="cameras read by MJPEG both ways (default 12, quick 3)")
    ap.add_argument("--mjpeg-seconds", type=float, help="seconds of the MJPEG window (default 20, quick 3)")
    args = ap.parse_args(argv)
    if args.fleet:
        return _main_fleet(args)
    quick = args.quick
    duration = args.duration or (2.0 if quick else 8.0)
    per_camera = args.events_per_camera or (300 if quick else 1000)
    ws_count = args.ws_count or (40 if quick else 200)
    stall_count = args.stall_count or (300 if quick else 1000)
    concs = [1, 8]
    t0 = time.perf_counter()
    print(f"api bench: {CAMERAS} cameras, {per_camera} events/camera, HTTP {duration:g} s per run at "
          f"concurrency {concs}, WebSocket {WS_CLIENTS} clients x {ws_count} messages at {args.ws_rate:g}/s; "
          f"{os.cpu_count()} CPUs", flush=True)
    load = os.getloadavg()
    if load[0] > 0.5:
        print(f"note: load average {load[0]:.2f} before the start: other work shares the CPUs", flush=True)
    ctx = mp.get_context("spawn")
    results: dict[str, Any] = {"http": [], "ws": []}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        folder = Path(tmp)
        data = make_data(folder, per_camera)
        token = data["token"]
        ev_paths = [f"/api/events?camera=cam{i % CAMERAS + 1}&limit=50" for i in range(CAMERAS)]
        ev_paths += ["/api/events?label=person&limit=50&offset=100"] * 4
        for variant in args.variants:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=serve, args=(variant, tmp, child), daemon=True)
            proc.start()
            try:
                if not parent.poll(60):
                    raise RuntimeError(f"{variant}: the server did not start")
                hello = parent.recv()
                if "error" in hello:
                    raise RuntimeError(hello["error"])
                url = hello["url"]
                server = psutil.Process(hello["pid"])
                for endpoint, paths in () if args.skip_http else (("status", ["/api/status"]),
                                                                    ("events", ev_paths)):
                    for conc in concs:
                        cpu0 = cpu_s(server)
                        r = http_run(url, token, paths, conc, duration)
                        r["cpu_pct"] = 100 * (cpu_s(server) - cpu0) / duration
                        r.update(variant=variant, endpoint=endpoint, conc=conc)
                        results["http"].append(r)
                        s = r["summary_ms"]
                        print(f"  {LABELS[variant]:<18} {endpoint:<7} c={conc}: p50 {_f(s['p50'])} ms, "
                              f"p99 {_f(s['p99'])} ms, {r['req_s']:.0f} req/s"
                              + (f", {r['errors']} errors ({r['first_error']})" if r["errors"] else ""),
                              file=sys.stderr, flush=True)
                for stalled in (False, True):
                    rate, count = (args.stall_rate, stall_count) if stalled else (args.ws_rate, ws_count)
                    r = ws_run(url, token, parent, rate, count, stalled)
                    r.update(rate=rate, count=count)
                    r.update(variant=variant)
                    results["ws"].append(r)
                    s = r["summary_ms"]
                    print(f"  {LABELS[variant]:<18} ws{' +stalled' if stalled else ''}: p50 "
                          f"{_f(s['p50'])} ms, p99 {_f(s['p99'])} ms, "
                          f"{r['received']}/{r['expected']}", file=sys.stderr, flush=True)
                parent.send(("stop",))
                proc.join(15)
            finally:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)

    _print_table(results)
    doc = {
        "bench": "api", "method": METHOD, "quick": quick, "cameras": CAMERAS, "events": data["events"],
        "duration_s": duration, "ws_clients": WS_CLIENTS, "ws_rate": args.ws_rate, "ws_count": ws_count,
        "stall_rate": args.stall_rate, "stall_count": stall_count,
        "results": results, "elapsed_s": time.perf_counter() - t0, "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "fastapi": metadata.version("fastapi"), "uvicorn": metadata.version("uvicorn")},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nraw results: {args.json} ({time.perf_counter() - t0:.0f} s)")
    return 0


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_table(results: dict[str, Any]) -> None:
    print("\nHTTP latency (ms) and throughput; server CPU% of one core")
    head = f"{'endpoint':<8} {'conc':>4} | " + " | ".join(
        f"{LABELS[v]:<35}" for v in VARIANTS)
    print(head)
    print(f"{'':<8} {'':>4} | " + " | ".join(f"{'p50':>7} {'p99':>7} {'req/s':>7} {'CPU%':>5}      "
                                            for _ in VARIANTS))
    print("-" * len(head))
    by = {(r["variant"], r["endpoint"], r["conc"]): r for r in results["http"]}
    for endpoint in ("status", "events"):
        for conc in sorted({r["conc"] for r in results["http"]}):
            cells = []
            for v in VARIANTS:
                r = by.get((v, endpoint, conc))
                if r is None:
                    cells.append(f"{'-':>35}")
                    continue
                s = r["summary_ms"]
                cells.append(f"{cell(s['p50'], 7, '.2f')} {cell(s['p99'], 7, '.2f')} "
                             f"{cell(r['req_s'], 7, '.0f')} {cell(r['cpu_pct'], 5, '.0f')}      ")
            print(f"{endpoint:<8} {conc:>4} | " + " | ".join(cells))
    print(f"\nWebSocket fan-out to {WS_CLIENTS} clients, publish -> receipt (ms)")
    rates = {r["stalled"]: f"{r['count']} msgs at {r['rate']:g}/s" for r in results["ws"]}
    print(f"{'case':<10} | " + " | ".join(f"{LABELS[v]:<30}" for v in VARIANTS))
    print(f"{'':<10} | " + " | ".join(f"{'p50':>7} {'p99':>7} {'recv':>14}" + " " * 0 for _ in VARIANTS))
    for stalled in (False, True):
        cells = []
        for v in VARIANTS:
            r = next((x for x in results["ws"] if x["variant"] == v and x["stalled"] == stalled), None)
            if r is None:
                cells.append(f"{'-':>30}")
                continue
            s = r["summary_ms"]
            cells.append(f"{cell(s['p50'], 7, '.2f')} {cell(s['p99'], 7, '.2f')} "
                         f"{r['received']:>7}/{r['expected']:<6}")
        print(f"{'+1 stalled' if stalled else '50 clients':<10} | " + " | ".join(cells)
              + f"   ({rates.get(stalled, '')})")


if __name__ == "__main__":
    sys.exit(main())
