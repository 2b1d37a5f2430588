"""Benchmark: how long each web UI view takes to load in a real browser, 32 cameras and 100,000 events.

Run from the repository root::

    .venv/bin/python bench/ui.py --quick          # 3 loads per view (< 60 s)
    .venv/bin/python bench/ui.py                  # 10 loads per view
    .venv/bin/python bench/ui.py --json out.json  # raw results (default artifacts/bench-ui.json)

See ``METHOD`` (printed and stored in the JSON). Target: every view under 1 s (PASS/MISS on p50;
the worst load is shown too). Needs Debian's ``chromium``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from _benchutil import cell, cpu_model, summary

CAMERAS = 32
EVENTS = 100_000
SEGMENT_S = 10.0
TARGET_MS = 1000.0
CHROMIUM = "/usr/bin/chromium"

METHOD = {
    "data": (
        f"{CAMERAS} cameras, {EVENTS} events (labels person/car/cat/dog, 0-2 zones, scores 0.5-0.99, starts "
        "spread over the last day) in a real SQLite store; a day of 10 s segments, motion spans every "
        "few minutes and the events for the camera of the timeline; a real camfleet.runtime NodeStatus "
        "for 32 cameras from a NodeControl stand-in; every camera has a live 640x360 frame ring (5 fps) "
        "and an overlay metadata ring with 3 objects per frame, published by this benchmark's server "
        "process"
    ),
    "server": "camfleet.api.create_app as shipped, behind ApiServer (uvicorn, one worker), own process",
    "browser": (
        "Debian's Chromium, headless, 1280x900, a new page per load (no cache of the previous page's "
        "modules), the admin token in localStorage. Load time = performance.now() when the view is "
        "ready (measured in the page; 0 = navigation start): live grid: 32 tiles, every tile on the "
        "screen with its JPEG loaded (tiles off the screen fetch no frames until scrolled to); "
        "camera: the picture and its overlay record drawn; events: the first page of 20 listed; "
        "events filtered: camera + label + score >= 70 % + not reviewed listed; recordings: the day's "
        "timeline drawn with its events; cameras: the editor's camera list; system: 32 camera rows"
    ),
}

VIEWS: list[tuple[str, str, str]] = [
    ("live grid", "live",
     "document.querySelectorAll('#grid img').length >= 32 && [...document.querySelectorAll("
     "'#grid img[data-visible=\"1\"]')].every(i => i.dataset.loaded === '1')"
     " && document.querySelectorAll('#grid img[data-loaded=\"1\"]').length > 0"),
    ("camera + overlay", "camera/cam1",
     "document.querySelector('#cam-overlay').dataset.seq > 0"),
    ("events", "events", "document.querySelectorAll('#events li').length >= 20"),
    ("events filtered", "events-filtered", "document.querySelectorAll('#events li').length >= 1"),
    ("recordings timeline", "recordings/cam1",
     "Number(document.querySelector('#rec-canvas').dataset.markers || 0) > 0"),
    ("cameras editor", "cameras", "document.querySelectorAll('#camera-list li').length >= 32"),
    ("system", "system", "document.querySelectorAll('#camera-table tbody tr').length >= 32"),
]


# --------------------------------------------------------------------------- data


def make_data(folder: Path) -> str:
    """The store: events, segments, activity, an admin token; returns the token."""
    from camfleet.store import EventRecord, Store
    from camfleet.vocabulary import MotionSpan, SegmentRecord

    store = Store.open(f"sqlite:///{folder / 'camfleet.db'}")
    token = store.create_token("bench", "admin")
    labels = ["person", "car", "cat", "dog"]
    now = time.time()
    t0 = now - 86_400
    per = EVENTS // CAMERAS
    batch: list[EventRecord] = []
    for k in range(per):
        for c in range(CAMERAS):
            start = t0 + (k * CAMERAS + c) * (86_400 / EVENTS)
            batch.append(EventRecord(id=f"ev-{c}-{k}", camera=f"cam{c + 1}", label=labels[(k + c) % 4],
                                     start=start, end=start + 8.0, top_score=0.5 + (k % 50) / 100,
                                     zones=["left", "door"][: (k % 3)],
                                     data={"track_id": k,
                                           "path": [[start, 0.2, 0.8], [start + 4, 0.5, 0.7]]}))
            if len(batch) >= 5000:
                store.upsert_events(batch)
                batch = []
    if batch:
        store.upsert_events(batch)
    segs = [SegmentRecord(camera="cam1", path=f"cam1/{i:06d}.mp4", start=t0 + i * SEGMENT_S,
                          end=t0 + (i + 1) * SEGMENT_S - 0.01, size=500_000, frames=50, keyframes=5)
            for i in range(int(86_400 / SEGMENT_S)) if (i // 300) % 4 != 3]  # a gap every 50 min
    for i in range(0, len(segs), 2000):
        for s in segs[i:i + 2000]:
            store.add_segment(s)
    store.add_activity([MotionSpan("cam1", "motion", t0 + m * 240.0, t0 + m * 240.0 + 40.0)
                        for m in range(int(86_400 / 240))])
    store.close()
    return token


# --------------------------------------------------------------------------- server (child process)


def _publish_rings(stop: threading.Event) -> None:
    """Every camera's frame ring and overlay ring at 5 fps (a moving box), until ``stop``."""
    from camfleet import framebus
    from camfleet.pipeline.meta import META_CAPACITY, META_CODEC, META_INDEX, meta_ring_key

    fmt = framebus.FrameFormat(640, 360, "yuv420p")
    pubs = [framebus.FramePublisher(f"cam{i + 1}", fmt, slots=4) for i in range(CAMERAS)]
    metas = [framebus.PacketPublisher(meta_ring_key(f"cam{i + 1}"), META_CODEC, capacity=META_CAPACITY,
                                      index_size=META_INDEX) for i in range(CAMERAS)]
    rng = np.random.default_rng(0)
    frame = rng.integers(16, 235, size=(360 * 3 // 2, 640), dtype=np.uint8)
    k = 0
    try:
        while not stop.wait(0.2):  # the frame rate of the simulated cameras
            k += 1
            for pub, meta in zip(pubs, metas, strict=True):
                seq = pub.publish(frame, pts=k * 18000)
                x = (k % 50) / 60
                record = {"seq": seq, "pts": k * 18000, "t": time.time(), "w": 640, "h": 360,
                          "objects": [{"id": j, "label": "person", "score": 0.9,
                                       "box": [x, 0.1 + j * 0.3, x + 0.1, 0.3 + j * 0.3],
                                       "stationary": False, "zones": []} for j in range(3)],
                          "motion": [[x, 0.1, x + 0.1, 0.9]]}
                meta.publish(json.dumps(record).encode(), pts=k * 18000, key=True)
    finally:
        for p in pubs:
            p.close()
        for m in metas:
            m.close()


def serve(folder: str, conn: Any) -> None:
    """The server process: the API on the bench store, the rings, until told to stop."""
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from api import _Node, status_for
        from camfleet.api import ApiServer, create_app
        from camfleet.config import ApiSettings
        from camfleet.runtime.default import default_config
        from camfleet.store import Store

        data = Path(folder)
        node = _Node(status_for(CAMERAS), default_config(data, cameras=CAMERAS, width=640, height=360, fps=5))
        store = Store.open(f"sqlite:///{data / 'camfleet.db'}")
        app = create_app(node, store, ApiSettings(max_ws_per_token=64), data_dir=data,
                         recordings_dir=data / "rec")
        stop = threading.Event()
        rings = threading.Thread(target=_publish_rings, args=(stop,), daemon=True)
        rings.start()
        server = ApiServer(app, "127.0.0.1", 0)
        server.start()
        conn.send({"url": server.url, "pid": os.getpid()})
        conn.recv()
        stop.set()
        rings.join(5)
        server.stop(5)
        store.close()
    except Exception:
        conn.send({"error": traceback.format_exc()})


# --------------------------------------------------------------------------- browser


def measure(url: str, token: str, loads: int) -> list[dict[str, Any]]:
    """Load every view ``loads`` times in Chromium; each load's ready time in ms."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx.add_init_script(f"localStorage.setItem('camfleet_token', {token!r})")
            for name, hash_, ready in VIEWS:
                samples = []
                for _ in range(loads + 1):  # the first load warms the server's caches: not counted
                    page = ctx.new_page()
                    if hash_ == "events-filtered":
                        page.goto(f"{url}/#events")
                        page.wait_for_function("() => document.querySelectorAll('#events li').length >= 1")
                        page.select_option("#filter-camera", "cam7")
                        page.fill('#event-filters input[name="label"]', "person")
                        page.fill('#event-filters input[name="min_score"]', "70")
                        page.check('#event-filters input[name="unreviewed"]')
                        t0 = page.evaluate("performance.now()")
                        page.evaluate("document.querySelector('#events').replaceChildren()")
                        page.click('#event-filters button[type="submit"]')
                        page.wait_for_function(f"() => {ready}", timeout=30_000)
                        ms = page.evaluate("performance.now()") - t0
                    else:
                        page.goto(f"{url}/#{hash_}")
                        page.wait_for_function(f"() => {ready}", timeout=30_000, polling="raf")
                        ms = page.evaluate("performance.now()")
                    samples.append(ms)
                    page.close()
                s = summary(samples[1:])
                out.append({"view": name, "samples_ms": samples[1:], "summary_ms": s,
                            "pass": s["p50"] is not None and s["p50"] < TARGET_MS})
                print(f"  {name:<20} p50 {s['p50']:.0f} ms, max {s['max']:.0f} ms", file=sys.stderr,
                      flush=True)
        finally:
            browser.close()
    return out


def _print_table(results: list[dict[str, Any]]) -> None:
    print(f"\n{'view':<22}{'p50 ms':>9}{'max ms':>9}  target < {TARGET_MS:.0f} ms")
    for r in results:
        s = r["summary_ms"]
        print(f"{cell(r['view'], 22, 's')}{cell(s['p50'], 9, '.0f')}{cell(s['max'], 9, '.0f')}  "
              f"{'PASS' if r['pass'] else 'MISS'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="3 loads per view")
    ap.add_argument("--loads", type=int, help="loads per view (default 3 with --quick, else 10)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-ui.json"), help="raw results")
    args = ap.parse_args(argv)
    if shutil.which(CHROMIUM) is None:
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2
    loads = args.loads or (3 if args.quick else 10)
    t0 = time.perf_counter()
    load = os.getloadavg()
    print(f"ui bench: {CAMERAS} cameras, {EVENTS} events, {loads} loads per view; {os.cpu_count()} CPUs"
          + (f"; load average {load[0]:.2f} at the start" if load[0] > 0.5 else ""), flush=True)
    shm = tempfile.mkdtemp(prefix="camfleet-benchui-", dir="/dev/shm")
    os.environ["CAMFLEET_SHM_DIR"] = shm
    ctx = mp.get_context("spawn")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
            token = make_data(Path(tmp))
            print(f"  data ready ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=serve, args=(tmp, child), daemon=True)
            proc.start()
            try:
                if not parent.poll(60):
                    raise RuntimeError("the server did not start")
                hello = parent.recv()
                if "error" in hello:
                    raise RuntimeError(hello["error"])
                results = measure(hello["url"], token, loads)
                parent.send("stop")
                proc.join(15)
            finally:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
    _print_table(results)
    doc = {"bench": "ui", "method": METHOD, "quick": args.quick, "cameras": CAMERAS, "events": EVENTS,
           "loads": loads, "target_ms": TARGET_MS, "results": results, "elapsed_s": time.perf_counter() - t0,
           "loadavg_start": load, "loadavg_end": os.getloadavg(),
           "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nraw results: {args.json} ({time.perf_counter() - t0:.0f} s)")
    return 0 if all(r["pass"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
