"""Benchmark: the shared detector service (camfleet.detect.service) and motion-gated detection.

Run from the repository root::

    .venv/bin/python bench/detect.py --quick          # 4 and 8 cameras, 2 rounds of the verdicts' rows
    .venv/bin/python bench/detect.py                  # 1, 4 and 8 cameras
    .venv/bin/python bench/detect.py --json out.json  # raw results (default artifacts/bench-detect.json)

Three sections, one run, the default model (SSD MobileNet v2 COCO quantized, TFLite):

1. throughput: N camera processes (forked from the detectors' fork server) issue detection requests
   back to back, through one shared detector of N workers of 1 thread (as many inference threads as
   the baseline), with 2 and with 1 request in flight per camera; through one worker per core of N /
   cores threads (equal threads, another shape); through the detector's default (one worker per
   core, one thread); and, as the baseline a user would otherwise write, with one TFLite runtime of
   one thread in every camera process. The variants run in rounds (alternating order), each ratio is
   taken within a round, and the verdicts are on the median over rounds: shared (2 in flight, as
   pipelines use it) >= 1.0x the baseline's images/s at 4 and 8 cameras, and a lower request latency
   (p50 and p99, 1 in flight on both sides) at 8. On a machine shared with other work, compare the
   ratios, not the absolute figures, and look at the ``load`` and ``other%`` columns;
2. motion gating: detector requests per camera-second on a mostly static scene, ``motion -> detect``
   against detecting every frame;
3. end-to-end latency: frames published into a framebus ring at 5 fps, a consumer process runs
   ``motion -> detect -> track -> zones -> events``; publish -> detections and publish -> event update.

See ``METHOD`` below (also printed and stored in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from _benchutil import cell as _cell
from _benchutil import cpu_model as _cpu_model
from _benchutil import cpu_s as _cpu_s
from _benchutil import dist_version, summary
from _benchutil import pct as _pct
from _detect_side import MODEL_IN, PROCESS_NAME, side_worker
from camfleet.detect import default_model_spec
from camfleet.detect.service import DetectorClient, DetectorSettings, read_heartbeat
from camfleet.detect.workers import default_workers
from camfleet.framebus import FrameFormat, FramePublisher, PixelFormat, shm_dir
from camfleet.runtime.detectors import DetectorManager

METHOD = {
    "model": (
        "the default model (SSD MobileNet v2 COCO quantized, TFLite, 300x300 input, fixed batch 1): "
        "a batch-1 model, so the detector hands each request to the next idle inference worker "
        "(no batching window); models with a batch axis (ONNX, dynamic batch) run real batches"
    ),
    "throughput": (
        "interleaved: per camera count N, both sides are started once and stay alive: N baseline camera "
        "processes (forked from the detectors' fork server), each with its own runtime "
        "(load_runtime(spec, threads=1)) calling infer([img]) "
        "back to back, and N shared-side camera processes, each with a DetectorClient to every shared "
        "detector of the run: 'run limit' = DetectorSettings(workers=N, threads=1) with max_running at its "
        "default (one per core), 'no run limit' = the same with max_running=N; N inference threads on "
        "both sides ('thr'). Images: 300x300 frames of camfleet.ingest.scene.Scene (person, cat, "
        "motorcycle). The sides take turns in slots of --slot s: the baseline runs between every two "
        "shared slots (own, A, own, B, ..., own; the shared groups in alternating order per repetition), "
        "only the slot's side works (the others block on an event), a shared slot runs one detector "
        "with 1 or 2 requests in flight per camera; the first 0.3 s of a slot are left out and a slot "
        "ends only once the side's last answers are in, so no answer of one side falls into the "
        "other's slot. A host whose speed drifts moves both sides of a pair alike"
    ),
    "ratios": (
        "'x med': each shared slot's images/s divided by the mean of the baseline slots right before "
        "and after it, median over the group's slots (the verdicts use it); 'x pool': all the group's "
        "images over all its slot time against the same for all baseline slots; 'x spread': min-max of "
        "the per-pair ratios. Latency ratios the same way on p50 and p99 (per pair: the shared slot's "
        "percentile against the percentile of its neighbouring baseline slots' requests)"
    ),
    "frames/s": (
        "images detected per second summed over cameras, over the group's slot time; min/cam: the "
        "slowest camera's lowest images/s in any slot (fairness)"
    ),
    "req ms": (
        "wall time of one request in a camera process, from submit (or infer() call) to its answer, "
        "p50 and p99 over the requests begun within the group's slots (answered within or after it: the "
        "side's last requests are answered before the next slot starts)"
    ),
    "CPU": (
        "psutil user+system CPU time over the slots of every process of the slot's side (camera "
        "processes, plus the shared detectors for a shared slot: the idle one costs ~0): 'CPU ms/img' "
        "per image detected, 'CPU%' per second of slot (200 = both cores)"
    ),
    "memory": (
        "PSS (proportional set size: shared pages divided among the processes sharing them) in MB, "
        "summed over the side's processes (shared: the N clients and both detectors), after the slots"
    ),
    "other%": (
        "CPU% the rest of the machine used during the slots (all-core busy time from psutil.cpu_times() "
        "minus the side's processes; the other side's idle processes included)"
    ),
    "gating": (
        "one camera, in this process, fed as fast as it goes; a 640x360 yuv420p scene "
        "(camfleet.ingest.scene.Scene, seed 0, one person) at 5 fps of scene time: the same rendered frame "
        "repeated, except a window of 10 % of the frames in the middle where the person walks (one "
        "frame index per frame), then stands still at the new place. Camera-seconds = frames / 5. "
        "'motion -> detect': [motion {}, detect {labels: [person]}] (regions mode, the default); "
        "'detect every frame': [detect {mode: frame, labels: [person]}]. det ms/cam-s: detector time "
        "inside runtime.infer() per camera-second (heartbeat counters). Both use the 1/core detector"
    ),
    "latency": (
        "a framebus FramePublisher (640x360 yuv420p, 8 slots, drop_oldest) in this process publishes the "
        "person crossing (Scene(640, 360, seed 0, ('person',)), frame i = render_i420(i)) at 5 fps, "
        "capture_ns = time.time_ns() just before publish(); a consumer process (spawn) subscribes "
        "(sequential) and runs [motion, detect {labels: [person]}, track {fps: 5, max_disappeared_s: "
        "1.5}, zones {} (left half), events {min_frames: 3}] on each frame, with its own DetectorClient. "
        "Times are time.time_ns() - capture_ns: 'det' when the detect element returned, for frames that "
        "sent a detector request; 'done' when the events element returned, all frames; 'event' the same "
        "for the frames that produced an EventUpdate of type start or update (n: how many)"
    ),
}

BENCH_TAG = f"bd{os.getpid()}"  # in every detector, camera and ring name of this run (cleanup)
READY_TIMEOUT = 90.0  # s; 8 spawned processes importing numpy/tflite on 2 busy cores
SCENE_FPS = 5.0
DISCARD_S = 0.3  # s at the start of each slot left out of the figures (queues and caches fill)
# shared-side groups: (detector, requests each camera keeps in flight); the baseline is "own"
GROUPS = {"lim-2": ("lim", 2), "lim-1": ("lim", 1), "all-2": ("all", 2), "all-1": ("all", 1)}
QUICK_GROUPS = ("lim-2", "lim-1")  # what the verdicts need
LABELS = {
    "lim-2": "shared, run limit, 2 in flight",
    "lim-1": "shared, run limit, 1 in flight",
    "all-2": "shared, no run limit, 2 in flight",
    "all-1": "shared, no run limit, 1 in flight",
    "shared-auto": "shared, 1/core x1",
    "own": "(b) runtime/camera",
    "gated": "motion -> detect",
    "every": "detect every frame",
}


# --------------------------------------------------------------------------- helpers
def _summary_ms(samples_ms: Sequence[float]) -> dict[str, Any]:
    return summary(samples_ms)


def _busy_s() -> float:
    """CPU time the whole machine has spent busy (all cores), seconds."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _sleep_until(t: float) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.05))


def _recv(conn: Any, timeout: float, what: str) -> Any:
    if not conn.poll(timeout):
        raise TimeoutError(f"no answer from {what} within {timeout:g} s")
    msg = conn.recv()
    if msg[0] == "error":
        raise RuntimeError(f"{what} failed:\n{msg[1]}")
    return msg


def _stop_procs(procs: list[Any], conns: list[Any]) -> None:
    """Ask the processes to exit, then kill those that do not (they close their rings themselves)."""
    for c in conns:
        with contextlib.suppress(OSError, ValueError):
            c.send(("exit",))
    deadline = time.monotonic() + 15
    for p in procs:
        p.join(max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
    for c in conns:
        c.close()


def _cleanup_shm() -> list[str]:
    """Remove whatever this run left in the shm directory (names carry BENCH_TAG); returns them."""
    left = []
    with contextlib.suppress(OSError):
        for path in shm_dir().iterdir():
            if BENCH_TAG in path.name:
                left.append(path.name)
                with contextlib.suppress(OSError):
                    path.unlink()
    return left


# --------------------------------------------------------------------------- 1. throughput, interleaved
def _wait_value(value: Any, want: int, timeout: float, what: str) -> None:
    """Bounded wait until a shared counter reaches ``want`` (the side's processes join or drain)."""
    deadline = time.monotonic() + timeout
    while value.value != want:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: {value.value} of {want} after {timeout:g} s")
        time.sleep(0.002)


def _schedule(groups: Sequence[str], reps: int) -> list[str]:
    """Slot order: the baseline between every two shared slots, the shared groups in alternating order."""
    order: list[str] = []
    for rep in range(reps):
        for g in (groups if rep % 2 == 0 else groups[::-1]):
            order += ["own", g]
    return [*order, "own"]


def run_interleaved(
    ctx: Any, n_cams: int, groups: Sequence[str], managers: dict[str, DetectorManager], slot_s: float,
    reps: int,
) -> dict[str, Any]:
    """Both sides alive at once for ``n_cams`` cameras, alternating short slots (see METHOD)."""
    dets = sorted({GROUPS[g][0] for g in groups})
    go = {"own": ctx.Event(), "shared": ctx.Event()}
    busy = {"own": ctx.Value("i", 0), "shared": ctx.Value("i", 0)}
    mode = ctx.Value("i", 0)
    stop = ctx.Event()
    procs: dict[str, list[Any]] = {"own": [], "shared": []}
    conns: dict[str, list[Any]] = {"own": [], "shared": []}
    out: dict[str, Any] = {"n_cams": n_cams, "slots": [], "errors": [], "groups": list(groups),
                           "detectors": {d: dataclasses.asdict(managers[d].settings) for d in dets}}
    try:
        for side in ("shared", "own"):
            for i in range(n_cams):
                parent, child = ctx.Pipe()
                spec = {"side": side, "detectors": [managers[d].settings.name for d in dets],
                        "camera": f"{BENCH_TAG}c{i}", "seed": i}
                p = ctx.Process(target=side_worker, args=(child, spec, go[side], mode, busy[side], stop),
                                daemon=True, name=PROCESS_NAME.format(side=side, i=i))
                p.start()
                child.close()
                procs[side].append(p)
                conns[side].append(parent)
        pids = {side: [_recv(c, READY_TIMEOUT, f"{side} camera {i}")[1] for i, c in enumerate(conns[side])]
                for side in ("shared", "own")}
        ps = {side: [psutil.Process(pid) for pid in pids[side]] for side in pids}
        for d in dets:
            assert managers[d].pid is not None
            ps["shared"].append(psutil.Process(managers[d].pid))
        for g in _schedule(groups, reps):
            side = "own" if g == "own" else "shared"
            if side == "shared":
                det, inflight = GROUPS[g]
                mode.value = dets.index(det) * 10 + inflight
            go[side].set()
            _wait_value(busy[side], n_cams, 10, f"{g}: cameras working")
            time.sleep(DISCARD_S)  # the side's queues and caches fill; the other side's are empty
            a = time.monotonic()
            cpu0, busy0 = sum(_cpu_s(p) for p in ps[side]), _busy_s()
            time.sleep(slot_s - DISCARD_S)
            b = time.monotonic()
            cpu1, busy1 = sum(_cpu_s(p) for p in ps[side]), _busy_s()
            go[side].clear()
            _wait_value(busy[side], 0, 30, f"{g}: cameras draining")
            out["slots"].append({"group": g, "a": a, "b": b, "cpu_s": cpu1 - cpu0,
                                 "other_s": (busy1 - busy0) - (cpu1 - cpu0), "load1": os.getloadavg()[0]})
        for side in ("shared", "own"):
            mem = [p.memory_full_info() for p in ps[side]]
            out[f"pss_mb_{side}"] = sum(getattr(m, "pss", 0) for m in mem) / 2**20
            out[f"rss_mb_{side}"] = sum(m.rss for m in mem) / 2**20
        stop.set()
        out["records"] = {side: [_recv(c, 60, f"{side} camera {i}")[1] for i, c in enumerate(conns[side])]
                          for side in ("shared", "own")}
    except Exception:
        out["errors"].append(traceback.format_exc())
    finally:
        stop.set()
        go["own"].clear()
        go["shared"].clear()
        _stop_procs(procs["shared"] + procs["own"], conns["shared"] + conns["own"])
    return out


def _slot_stats(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Per slot: images/s, slowest camera's, latencies (requests begun in the slot), CPU ms/image."""
    recs = {side: [np.asarray(r, dtype=np.float64).reshape(-1, 3) for r in cams]
            for side, cams in run["records"].items()}
    out = []
    for s in run["slots"]:
        side = "own" if s["group"] == "own" else "shared"
        a, b, w = s["a"], s["b"], s["b"] - s["a"]
        per_cam, lat = [], []
        for r in recs[side]:
            ends, starts = r[:, 2], r[:, 1]
            per_cam.append(int(((ends >= a) & (ends < b)).sum()))
            # begun within the slot, answered whenever: a slot's end cuts no long request out
            begun = (starts >= a) & (starts < b)
            lat += list((ends[begun] - starts[begun]) * 1e3)
        n = sum(per_cam)
        out.append({**{k: s[k] for k in ("group", "a", "b", "load1")}, "images": n, "fps": n / w,
                    "fps_cam_min": min(per_cam) / w, "lat_ms": lat,
                    "cpu_ms_img": 1e3 * s["cpu_s"] / n if n else None,
                    "cpu_pct": 100 * s["cpu_s"] / w, "other_pct": 100 * s["other_s"] / w, "window_s": w})
    return out


def _pairs(slots: list[dict[str, Any]], group: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each slot of ``group`` with the baseline slots right before and after it."""
    out = []
    for i, s in enumerate(slots):
        if s["group"] == group:
            own = [slots[j] for j in (i - 1, i + 1) if 0 <= j < len(slots) and slots[j]["group"] == "own"]
            if own:
                out.append((s, own))
    return out


def summarize_interleaved(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows (one per group, baseline included) with the paired ratios against the baseline."""
    if run["errors"] or "records" not in run:
        return [{"section": "throughput", "variant": g, "n_cams": run["n_cams"], "errors": run["errors"],
                 "summary": {}} for g in ["own", *run["groups"]]]
    slots = _slot_stats(run)
    run["slot_stats"] = [{k: v for k, v in s.items() if k != "lat_ms"} for s in slots]
    rows = []
    n = run["n_cams"]
    for g in ["own", *run["groups"]]:
        mine = [s for s in slots if s["group"] == g]
        images, window = sum(s["images"] for s in mine), sum(s["window_s"] for s in mine)
        lat = [v for s in mine for v in s["lat_ms"]]
        cpu = sum(s["cpu_pct"] * s["window_s"] / 100 for s in mine)
        side = "own" if g == "own" else "shared"
        summ: dict[str, Any] = {
            "slots": len(mine), "threads": n, "fps_total": images / window,
            "fps_cam_min": min(s["fps_cam_min"] for s in mine),
            "req_p50_ms": _pct(lat, 50), "req_p99_ms": _pct(lat, 99),
            "cpu_ms_img": 1e3 * cpu / images if images else None, "cpu_pct": 100 * cpu / window,
            "other_cpu_pct": float(np.mean([s["other_pct"] for s in mine])),
            "pss_mb": run.get(f"pss_mb_{side}"), "rss_mb": run.get(f"rss_mb_{side}"),
            "slot_fps": [s["fps"] for s in mine],
        }
        if g != "own":
            pairs = _pairs(slots, g)
            ratios = [s["fps"] / float(np.mean([o["fps"] for o in own])) for s, own in pairs]
            own_all = [s for s in slots if s["group"] == "own"]
            own_rate = sum(s["images"] for s in own_all) / sum(s["window_s"] for s in own_all)
            own_lat = [v for s in own_all for v in s["lat_ms"]]
            p50r = [_pct(s["lat_ms"], 50) / _pct([v for o in own for v in o["lat_ms"]], 50)  # type: ignore[operator]
                    for s, own in pairs if s["lat_ms"]]
            p99r = [_pct(s["lat_ms"], 99) / _pct([v for o in own for v in o["lat_ms"]], 99)  # type: ignore[operator]
                    for s, own in pairs if s["lat_ms"]]
            summ.update({
                "ratio_med": float(np.median(ratios)), "ratio_pooled": summ["fps_total"] / own_rate,
                "ratio_min": min(ratios), "ratio_max": max(ratios), "ratios": ratios,
                "p50_ratio_med": float(np.median(p50r)), "p99_ratio_med": float(np.median(p99r)),
                "p50_ratio_pooled": summ["req_p50_ms"] / _pct(own_lat, 50),
                "p99_ratio_pooled": summ["req_p99_ms"] / _pct(own_lat, 99),
            })
            summ["spread"] = f"{summ['ratio_min']:.2f}-{summ['ratio_max']:.2f}"
        rows.append({"section": "throughput", "variant": g, "n_cams": n, "errors": [], "summary": summ,
                     "detector": run["detectors"].get(GROUPS[g][0]) if g != "own" else None})
    return rows


# --------------------------------------------------------------------------- 2. motion gating
def _gating_frames(n_frames: int) -> tuple[list[np.ndarray], list[int], tuple[int, int]]:
    """The mostly static scene: frame arrays (shared, not copied) and the moving window [a, b)."""
    from camfleet.ingest.scene import Scene

    scene = Scene(width=640, height=360, seed=0, objects=("person",))
    moving = max(2, round(n_frames * 0.10))
    a = (n_frames - moving) // 2
    b = a + moving
    renders = [scene.render_i420(k) for k in range(moving + 1)]
    index = [min(max(i - a, 0), moving) for i in range(n_frames)]
    return renders, index, (a, b)


def run_gating(
    variant: str, client: DetectorClient, detector: str, n_frames: int, frames: Any, data_dir: Path
) -> dict[str, Any]:
    from camfleet.pipeline import FrameContext, Pipeline, PipelineEnv

    renders, index, (a, b) = frames
    specs: list[tuple[str, dict[str, Any] | None]]
    if variant == "gated":
        specs = [("motion", {}), ("detect", {"labels": ["person"]})]
    else:
        specs = [("detect", {"mode": "frame", "labels": ["person"]})]
    camera = f"{BENCH_TAG}g"
    env = PipelineEnv(camera, data_dir=data_dir, services={"detectors": {"cpu": client}})
    pipe = Pipeline(specs, env)
    det = pipe.elements[-1]
    motion_frames = person_frames = person_in_window = 0
    pipe.start()
    try:
        hb0 = read_heartbeat(detector)
        t0 = time.perf_counter()
        for i in range(n_frames):
            ctx = FrameContext(camera, i + 1, i, int(1e12 + i * 1e9 / SCENE_FPS), 640, 360,
                               PixelFormat.YUV420P, renders[index[i]])
            pipe.process(ctx)
            motion_frames += bool(ctx.motion)
            if any(d.label == "person" for d in ctx.detections):
                person_frames += 1
                person_in_window += a <= i < b
        wall = time.perf_counter() - t0
        hb1 = read_heartbeat(detector)
    finally:
        pipe.stop()
    cam_s = n_frames / SCENE_FPS
    requests, images = int(det.requests), int(det.images)  # type: ignore[attr-defined]
    infer_ms = (hb1.infer_ns - hb0.infer_ns) / 1e6 if hb0 and hb1 else None
    return {
        "section": "gating",
        "variant": variant,
        "pipeline": specs,
        "frames": n_frames,
        "moving_frames": [a, b],
        "errors": [],
        "summary": {
            "frames": n_frames,
            "cam_s": cam_s,
            "requests": requests,
            "req_per_cam_s": requests / cam_s,
            "img_per_cam_s": images / cam_s,
            "det_ms_per_cam_s": infer_ms / cam_s if infer_ms is not None else None,
            "motion_frames": motion_frames,
            "person_frames": person_frames,
            "person_in_window": person_in_window,
            "window_frames": b - a,
            "ms_per_frame": 1e3 * wall / n_frames,
            "wall_s": wall,
        },
    }


# --------------------------------------------------------------------------- 3. end-to-end latency
def _latency_consumer(conn: Any, spec: dict[str, Any]) -> None:
    """Subscribe to the ring, run the full pipeline on every frame, time each stage from capture_ns."""
    from camfleet.framebus import Overrun, subscribe
    from camfleet.pipeline import EventType, EventUpdate, FrameContext, Pipeline, PipelineEnv

    client: DetectorClient | None = None
    sub = None
    pipe = None
    data_dir = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    try:
        client = DetectorClient(spec["detector"], spec["camera"], MODEL_IN)
        client.detect([np.zeros((MODEL_IN[1], MODEL_IN[0], 3), np.uint8)])  # connect + warm up
        env = PipelineEnv(
            camera=spec["camera"], data_dir=data_dir, services={"detectors": {"cpu": client}},
            zones={"left": {"points": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)], "labels": ["person"]}},
        )
        pipe = Pipeline(
            [("motion", {}),
             ("detect", {"labels": ["person"]}),
             ("track", {"fps": SCENE_FPS, "max_disappeared_s": 1.5}),
             ("zones", {}),
             ("events", {"min_frames": 3})],
            env,
        )
        pipe.start()
        det = pipe.elements[1]
        sub = subscribe(spec["key"], mode="sequential", name="bench-consumer", connect_timeout=10)
        conn.send(("ready", os.getpid()))
        rows: list[dict[str, Any]] = []
        overruns = 0
        while True:
            try:
                frame = sub.next(timeout=30)
            except Overrun:
                overruns += 1
                continue
            try:
                if frame.pts < 0:
                    break
                t_recv = time.time_ns()
                fmt = frame.format
                ctx = FrameContext(spec["camera"], frame.seq, frame.pts, frame.capture_ns, fmt.width,
                                   fmt.height, fmt.pixel_format, frame.array)
                before = det.requests  # type: ignore[attr-defined]
                t_det = 0
                for element in pipe.elements:
                    element.process(ctx)
                    element.beat()
                    if element is det:
                        t_det = time.time_ns()
                t_done = time.time_ns()
                kinds = [u.type.value for u in ctx.events
                         if isinstance(u, EventUpdate) and u.type in (EventType.START, EventType.UPDATE)]
                rows.append({
                    "seq": frame.seq, "capture_ns": frame.capture_ns, "recv_ns": t_recv,
                    "det_ns": t_det, "done_ns": t_done,
                    "requested": det.requests > before,  # type: ignore[attr-defined]
                    "detections": len(ctx.detections), "events": kinds,
                })
            finally:
                frame.release()
        conn.send(("result", {"frames": rows, "overruns": overruns,
                              "requests": det.requests}))  # type: ignore[attr-defined]
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        if sub is not None:
            sub.close()
        if pipe is not None:
            pipe.stop()
        if client is not None:
            client.close()
        shutil.rmtree(data_dir, ignore_errors=True)
        conn.close()


def run_latency(ctx: Any, variant: str, manager: DetectorManager, duration: float) -> dict[str, Any]:
    from camfleet.ingest.scene import Scene

    scene = Scene(width=640, height=360, seed=0, objects=("person",))
    n_frames = max(5, round(duration * SCENE_FPS))
    frames = [scene.render_i420(i) for i in range(n_frames)]
    key = f"{BENCH_TAG}-lat-{variant}"
    row: dict[str, Any] = {"section": "latency", "variant": variant, "errors": [], "summary": {}}
    pub: FramePublisher | None = None
    proc = None
    conn = None
    t_start = time.perf_counter()
    try:
        pub = FramePublisher(key, FrameFormat.packed_format(640, 360, "yuv420p"), slots=8)
        conn, child = ctx.Pipe()
        spec = {"key": key, "detector": manager.settings.name, "camera": f"{BENCH_TAG}l{variant}"}
        proc = ctx.Process(target=_latency_consumer, args=(child, spec), daemon=True, name="bench-consumer")
        proc.start()
        child.close()
        _recv(conn, READY_TIMEOUT, "latency consumer")
        publish_ms: list[float] = []
        next_t = time.monotonic() + 0.1
        for i, image in enumerate(frames):
            _sleep_until(next_t)
            next_t += 1 / SCENE_FPS
            capture_ns = time.time_ns()
            pub.publish(image, pts=i, capture_ns=capture_ns)
            publish_ms.append((time.time_ns() - capture_ns) / 1e6)
        _sleep_until(next_t)
        pub.begin()
        pub.commit(pts=-1)  # end marker, no copy
        result = _recv(conn, 120, "latency consumer")[1]
        fr = result["frames"]
        det_ms = [(f["det_ns"] - f["capture_ns"]) / 1e6 for f in fr if f["requested"]]
        done_ms = [(f["done_ns"] - f["capture_ns"]) / 1e6 for f in fr]
        event_ms = [(f["done_ns"] - f["capture_ns"]) / 1e6 for f in fr if f["events"]]
        recv_ms = [(f["recv_ns"] - f["capture_ns"]) / 1e6 for f in fr]
        s = {
            "published": n_frames,
            "frames": len(fr),
            "det_frames": sum(1 for f in fr if f["requested"]),
            "event_updates": sum(len(f["events"]) for f in fr),
            "event_frames": len(event_ms),
            "starts": sum(f["events"].count("start") for f in fr),
            "overruns": result["overruns"],
            "lost": n_frames - len(fr),
        }
        for name, samples in (("det", det_ms), ("done", done_ms), ("event", event_ms), ("recv", recv_ms),
                              ("publish", publish_ms)):
            summ = _summary_ms(samples)
            row[f"{name}_ms"] = summ
            s[f"{name}_p50_ms"], s[f"{name}_p99_ms"] = summ["p50"], summ["p99"]
        row["summary"] = s
        row["frames"] = fr
    except Exception:
        row["errors"].append(traceback.format_exc())
    finally:
        if conn is not None and proc is not None:
            _stop_procs([proc], [conn])
        if pub is not None:
            pub.close()
    row["elapsed_s"] = time.perf_counter() - t_start
    return row


# --------------------------------------------------------------------------- report
Column = tuple[str, int, str, str]  # header, width, format, summary key

TPUT_COLUMNS: list[Column] = [
    ("variant", 31, "s", "label"),
    ("cams", 4, "d", "n_cams"),
    ("slots", 5, "d", "slots"),
    ("thr", 3, "d", "threads"),
    ("frames/s", 8, ".1f", "fps_total"),
    ("min/cam", 7, ".1f", "fps_cam_min"),
    ("x med", 5, ".2f", "ratio_med"),
    ("x pool", 6, ".2f", "ratio_pooled"),
    ("x spread", 9, "s", "spread"),
    ("req p50", 7, ".1f", "req_p50_ms"),
    ("req p99", 7, ".1f", "req_p99_ms"),
    ("CPU ms/img", 10, ".1f", "cpu_ms_img"),
    ("CPU%", 5, ".0f", "cpu_pct"),
    ("PSS MB", 6, ".0f", "pss_mb"),
    ("other%", 6, ".0f", "other_cpu_pct"),
]
GATE_COLUMNS: list[Column] = [
    ("pipeline", 18, "s", "label"),
    ("frames", 6, "d", "frames"),
    ("cam-s", 5, ".0f", "cam_s"),
    ("det req", 7, "d", "requests"),
    ("req/cam-s", 9, ".3f", "req_per_cam_s"),
    ("img/cam-s", 9, ".3f", "img_per_cam_s"),
    ("det ms/cam-s", 12, ".1f", "det_ms_per_cam_s"),
    ("motion fr", 9, "d", "motion_frames"),
    ("person fr", 9, "d", "person_frames"),
    ("in window", 9, "s", "window"),
    ("ms/frame", 8, ".1f", "ms_per_frame"),
]
LAT_COLUMNS: list[Column] = [
    ("detector", 18, "s", "label"),
    ("frames", 6, "d", "frames"),
    ("det fr", 6, "d", "det_frames"),
    ("det p50", 7, ".1f", "det_p50_ms"),
    ("det p99", 7, ".1f", "det_p99_ms"),
    ("done p50", 8, ".1f", "done_p50_ms"),
    ("done p99", 8, ".1f", "done_p99_ms"),
    ("events", 6, "d", "event_frames"),
    ("event p50", 9, ".1f", "event_p50_ms"),
    ("event p99", 9, ".1f", "event_p99_ms"),
    ("recv p50", 8, ".2f", "recv_p50_ms"),
    ("lost", 4, "d", "lost"),
]


def row_label(r: dict[str, Any]) -> str:
    """A row's variant, with its detector's workers x threads and run limit when it has one."""
    det = r.get("detector")
    if not det or not det.get("workers"):
        return LABELS[r["variant"]]
    inflight = GROUPS[r["variant"]][1]
    limit = det.get("max_running") or default_workers()  # None: the default, one per core
    run = "no limit" if limit >= det["workers"] else f"run {limit}"
    return f"shared {det['workers']}x{det['threads']} {run}, {inflight} in fl."


def format_table(columns: list[Column], rows: list[dict[str, Any]], group: str | None = None) -> str:
    header = " ".join(c[0].ljust(c[1]) if i == 0 else c[0].rjust(c[1]) for i, c in enumerate(columns))
    lines = [header, "-" * len(header)]
    last = None
    for r in rows:
        if group is not None and last is not None and r.get(group) != last:
            lines.append("")
        last = r.get(group) if group else None
        values = dict(r.get("summary", {}))
        values["label"] = row_label(r) + ("!" if r.get("errors") else "")
        values["n_cams"] = r.get("n_cams")
        if r["section"] == "gating":
            values["window"] = f"{values['person_in_window']}/{values['window_frames']}"
        lines.append(" ".join(_cell(values.get(key), width, fmt) for _h, width, fmt, key in columns))
    return "\n".join(lines)


TARGET_RATIO = 1.0  # issue 13: shared >= 1.0x one runtime per camera at 4 and 8 cameras
TARGET_CAMS = (4, 8)
LATENCY_CAMS = 8  # ... and a lower request latency at 8 cameras


def _row(tput: list[dict[str, Any]], group: str, n: int) -> dict[str, Any] | None:
    return next((r["summary"] for r in tput if r["variant"] == group and r["n_cams"] == n
                 and not r["errors"] and r.get("summary")), None)


def verdicts(tput: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each PASS/MISS/n/a with its figures (equal total inference threads).

    Both sides run at once, in alternating slots (see METHOD "throughput"): each shared slot's
    figure is divided by the mean of the baseline slots right before and after it, and the verdict
    is on the median of those per-pair ratios; the pooled ratio (all shared slots against all
    baseline slots) and the spread of the per-pair ratios are given beside it.
    Throughput: the shared detector with its run limit (default, one per core), N workers of 1
    thread, 2 requests in flight as the ``detect`` element keeps them, against one runtime per camera.
    Latency: one request in flight per camera on both sides (the same offered load).
    """
    out: list[dict[str, Any]] = []
    for n in TARGET_CAMS:
        target = (f"images/s shared (N x 1 thread, run limit, 2 in flight) / runtime per camera "
                  f"(N x 1 thread) >= {TARGET_RATIO:g}x at {n} cameras, median of paired slots")
        s = _row(tput, "lim-2", n)
        if s is None:
            out.append({"target": target, "verdict": "n/a", "why": "not measured (or failed) in this run"})
        else:
            one = _row(tput, "lim-1", n)
            own = _row(tput, "own", n) or {}
            split = ""
            if s.get("cpu_ms_img") and own.get("cpu_ms_img") and own.get("cpu_pct"):
                # pooled images/s ratio = (CPU used ratio) x (baseline CPU per image / shared CPU per
                # image), exactly: with both sides using the whole machine, only the second can move
                split = (f"; pooled = CPU used {s['cpu_pct']:.0f}/{own['cpu_pct']:.0f}% "
                         f"({s['cpu_pct'] / own['cpu_pct']:.2f}) x CPU per image {own['cpu_ms_img']:.1f}/"
                         f"{s['cpu_ms_img']:.1f} ms ({own['cpu_ms_img'] / s['cpu_ms_img']:.2f}): the same "
                         f"batch-1 model per image on both sides, plus the request's trip on the shared side")
            out.append({
                "target": target, "verdict": "PASS" if s["ratio_med"] >= TARGET_RATIO else "MISS",
                "ratio": s["ratio_med"], "ratio_pooled": s["ratio_pooled"], "ratios": s["ratios"],
                "ratio_1_in_flight": one["ratio_med"] if one else None,
                "why": f"median {s['ratio_med']:.2f}x, pooled {s['ratio_pooled']:.2f}x over "
                       f"{len(s['ratios'])} paired slots (spread {s['spread']})"
                       + (f"; 1 in flight: median {one['ratio_med']:.2f}x" if one else "") + split,
            })
        if n != LATENCY_CAMS:
            continue
        target = (f"request latency p50 and p99, 1 in flight, shared (run limit) < runtime per camera "
                  f"at {n} cameras")
        s = _row(tput, "lim-1", n)
        if s is None:
            out.append({"target": target, "verdict": "n/a", "why": "not measured (or failed) in this run"})
            continue
        r50, r99 = s["p50_ratio_med"], s["p99_ratio_med"]
        own = _row(tput, "own", n) or {}
        out.append({
            "target": target, "verdict": "PASS" if r50 < 1.0 and r99 < 1.0 else "MISS",
            "p50_ratio": r50, "p99_ratio": r99,
            "p50_ratio_pooled": s["p50_ratio_pooled"], "p99_ratio_pooled": s["p99_ratio_pooled"],
            "why": f"shared / own, median of paired slots: p50 {r50:.2f}x, p99 {r99:.2f}x; pooled p50 "
                   f"{s['req_p50_ms']:.0f} vs {own.get('req_p50_ms') or 0:.0f} ms "
                   f"({s['p50_ratio_pooled']:.2f}x), p99 {s['req_p99_ms']:.0f} vs "
                   f"{own.get('req_p99_ms') or 0:.0f} ms ({s['p99_ratio_pooled']:.2f}x)",
        })
    return out


def _ratio_lines(tput: list[dict[str, Any]], gating: list[dict[str, Any]]) -> list[str]:
    """Plain comparisons from the tables (the targets are in :func:`verdicts`)."""
    out = []
    for n in sorted({r["n_cams"] for r in tput}):
        own = _row(tput, "own", n)
        parts = []
        for g in GROUPS:
            s = _row(tput, g, n)
            if s is None or own is None:
                continue
            parts.append(f"{LABELS[g]} {s['ratio_med']:.2f}x (pooled {s['ratio_pooled']:.2f}x), "
                         f"p50 {s['p50_ratio_med']:.2f}x p99 {s['p99_ratio_med']:.2f}x, "
                         f"CPU {s['cpu_ms_img']:.1f} ms/image")
        if parts and own:
            out.append(f"{n} cam{'s' if n > 1 else ''}: vs runtime per camera ({n} threads, CPU "
                       f"{own['cpu_ms_img']:.1f} ms/image), median of paired slots: " + "; ".join(parts))
        lim, nolim = _row(tput, "lim-1", n), _row(tput, "all-1", n)
        if lim and nolim:
            out.append(f"{n} cams, run limit vs none (1 in flight, each against its neighbouring baseline "
                       f"slots): images/s {lim['ratio_med']:.2f}x vs {nolim['ratio_med']:.2f}x, p50 "
                       f"{lim['p50_ratio_med']:.2f}x vs {nolim['p50_ratio_med']:.2f}x, p99 "
                       f"{lim['p99_ratio_med']:.2f}x vs {nolim['p99_ratio_med']:.2f}x")
    g = {r["variant"]: r["summary"] for r in gating if not r["errors"]}
    if "gated" in g and "every" in g and g["gated"]["req_per_cam_s"] > 0:
        gated, every = g["gated"]["req_per_cam_s"], g["every"]["req_per_cam_s"]
        out.append(
            f"motion gating: {gated:.3f} vs {every:.3f} detector requests per camera-second "
            f"= {every / gated:.1f}x fewer"
        )
    return out


# --------------------------------------------------------------------------- main
def _start_managers(settings: dict[str, DetectorSettings], into: dict[str, DetectorManager]) -> None:
    """Start the detectors side by side (their start-up imports overlap); ``into`` gets each at once."""
    errors: list[BaseException] = []

    def start(m: DetectorManager) -> None:
        try:
            m.start(ready_timeout=READY_TIMEOUT)
        except BaseException as exc:
            errors.append(exc)

    threads = []
    for variant, s in settings.items():
        into[variant] = DetectorManager(s)
        threads.append(threading.Thread(target=start, args=(into[variant],)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="4 and 8 cameras, short phases (1-2 minutes)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-detect.json"), help="raw results")
    ap.add_argument("--cams", nargs="+", type=int, help="camera counts (default by mode)")
    ap.add_argument("--groups", nargs="+", choices=tuple(GROUPS),
                    help=f"shared-side groups (default: {' '.join(QUICK_GROUPS)} with --quick, else all)")
    ap.add_argument("--reps", type=int, help="slots of each shared group (default 2 quick, 8 full)")
    ap.add_argument("--slot", type=float, help="seconds of each slot (default 1.25 quick, 2.5 full)")
    ap.add_argument("--gate-frames", type=int, help="frames of the gating scene (5 per camera-second)")
    ap.add_argument("--lat-duration", type=float, help="seconds of frames in each latency run (5 fps)")
    args = ap.parse_args(argv)
    quick = args.quick
    args.cams = args.cams or ([4, 8] if quick else [1, 4, 8])
    args.slot = args.slot or (1.25 if quick else 2.5)
    args.reps = args.reps or (2 if quick else 8)  # quick: under a minute; its verdicts are indicative
    args.groups = list(dict.fromkeys(args.groups or (QUICK_GROUPS if quick else GROUPS)))
    args.gate_frames = args.gate_frames or (100 if quick else 300)
    args.lat_duration = args.lat_duration or (3.0 if quick else 10.0)
    if any(n < 1 or n > 32 for n in args.cams):
        ap.error("--cams must be 1..32")
    if args.slot <= DISCARD_S + 0.2 or args.reps < 1:
        ap.error(f"--slot must be > {DISCARD_S + 0.2:g} s and --reps >= 1")

    ctx = mp.get_context("spawn")
    # The throughput section's camera processes fork from the fork server the detectors start from
    # (camfleet's, with camfleet's modules imported), see _detect_side
    side_ctx = mp.get_context("forkserver")
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    spec = default_model_spec()
    print(
        f"detect bench: model {spec.id}; cameras {args.cams}; {args.reps} slots of {args.slot:g} s per "
        "group; "
        f"gating {args.gate_frames} frames; latency {args.lat_duration:g} s at {SCENE_FPS:g} fps; "
        f"{os.cpu_count()} CPUs",
        flush=True,
    )
    if load_start[0] > 0.5:
        print(f"note: load average {load_start[0]:.2f} before the start: other work shares the CPUs",
              flush=True)

    tput: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []  # the interleaved runs' slots (raw)
    gating: list[dict[str, Any]] = []
    latency: list[dict[str, Any]] = []
    managers: dict[str, DetectorManager] = {}
    per_n: list[DetectorManager] = []  # the N-worker detectors, one per camera count
    client: DetectorClient | None = None
    data_dir = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    try:
        # the node's default: one worker per core (also serves the gating and latency sections)
        _start_managers({"auto": DetectorSettings(f"{BENCH_TAG}-auto", spec, threads=1,
                                                  workers=default_workers())}, managers)
        print(f"  detectors up after {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

        # 1. throughput and request latency: per camera count, both sides alive, alternating slots
        for n in args.cams:
            wanted = {}
            for det in sorted({GROUPS[g][0] for g in args.groups}):
                # the baseline's shape: n inference threads; "all": as many run slots as workers
                wanted[det] = DetectorSettings(f"{BENCH_TAG}-{det}{n}", spec, workers=n, threads=1,
                                               max_running=n if det == "all" else None)
            started: dict[str, DetectorManager] = {}
            _start_managers(wanted, started)
            per_n.extend(started.values())
            t_n = time.perf_counter()
            run = run_interleaved(side_ctx, n, args.groups, started, args.slot, args.reps)
            for m in started.values():
                m.stop()
                if m.restarts:
                    run["errors"].append(f"detector {m.settings.name} restarted {m.restarts} time(s)")
            rows = summarize_interleaved(run)
            tput += rows
            runs.append({k: v for k, v in run.items() if k != "records"})
            for r in rows:
                fps = r["summary"].get("fps_total")
                err = f"  error: {r['errors'][0].strip().splitlines()[-1]}" if r["errors"] else ""
                print(f"  {LABELS[r['variant']]:<34} {n} cam: {'-' if fps is None else f'{fps:.1f}'} "
                      f"frames/s{err}",
                      file=sys.stderr, flush=True)
            print(f"  {n} cameras: {time.perf_counter() - t_n:.1f} s", file=sys.stderr, flush=True)

        # 2. motion gating (one camera, the default detector)
        gate_det = managers["auto"].settings.name
        client = DetectorClient(gate_det, f"{BENCH_TAG}g", MODEL_IN)
        frames = _gating_frames(args.gate_frames)
        for variant in ("gated", "every"):
            try:
                r = run_gating(variant, client, gate_det, args.gate_frames, frames, data_dir)
            except Exception:
                r = {"section": "gating", "variant": variant, "errors": [traceback.format_exc()],
                     "summary": {}}
            gating.append(r)
            s = r["summary"]
            print(f"  {LABELS[variant]:<18} {s.get('requests', '-')} requests, {s.get('wall_s', 0):.1f} s",
                  file=sys.stderr, flush=True)
        client.close()
        client = None

        # 3. end-to-end latency
        for variant in ("shared-auto",):
            r = run_latency(ctx, variant, managers["auto"], args.lat_duration)
            latency.append(r)
            print(f"  latency {LABELS[variant]:<18} {r['elapsed_s']:.1f} s"
                  + (f"  error: {r['errors'][0].strip().splitlines()[-1]}" if r["errors"] else ""),
                  file=sys.stderr, flush=True)
        det_stats = {v: (h.__dict__ if (h := read_heartbeat(m.settings.name)) else None)
                     for v, m in managers.items()}
        restarts = {v: m.restarts for v, m in managers.items()}
        restarts.update({m.settings.name: m.restarts for m in per_n})
    finally:
        if client is not None:
            client.close()
        for m in [*managers.values(), *per_n]:
            m.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        leftovers = _cleanup_shm()
    elapsed = time.perf_counter() - t0

    print()
    print("1. detector throughput and request latency, interleaved slots (frames/s = images detected per "
          "second, all cameras; x = ratio to the runtime-per-camera baseline; ms = milliseconds)")
    print(format_table(TPUT_COLUMNS, tput, group="n_cams"))
    print()
    print(f"2. motion gating: one camera, mostly static scene, {args.gate_frames} frames at "
          f"{SCENE_FPS:g} fps of scene time")
    print(format_table(GATE_COLUMNS, gating))
    print()
    print(f"3. end-to-end latency, ms from publish (capture_ns) at {SCENE_FPS:g} fps, "
          "motion -> detect -> track -> zones -> events")
    print(format_table(LAT_COLUMNS, latency))
    print()
    for line in _ratio_lines(tput, gating):
        print(line)
    print()
    targets = verdicts(tput)
    print("targets (issue 13), equal total inference threads on both sides:")
    for v in targets:
        print(f"  {v['verdict']:<4} {v['target']}: {v['why']}")
    print()
    load_end = os.getloadavg()
    print(
        f"total {elapsed:.1f} s; load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end;"
        " "
        f"detector restarts {restarts}. Columns:"
    )
    for key, text in METHOD.items():
        print(f"  {key}: {text}")
    errors = [e for r in tput + gating + latency for e in r.get("errors", [])]
    if errors:
        print(f"\n{len(errors)} error(s):")
        for e in errors:
            print("  " + e.strip().splitlines()[-1])
    if leftovers:
        print(f"\nremoved {len(leftovers)} leftover shm file(s): {', '.join(leftovers)}")

    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "argv": sys.argv,
            "quick": quick,
            "elapsed_s": elapsed,
            "python": sys.version,
            "numpy": np.__version__,
            "ai_edge_litert": dist_version("ai-edge-litert"),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "cpu_model": _cpu_model(),
            "loadavg_start": load_start,
            "loadavg_end": load_end,
            "model": {"id": spec.id, "sha256": spec.sha256, "path": str(spec.path)},
            "detectors": {m.settings.name: m.settings.__dict__ for m in [*managers.values(), *per_n]},
            "detector_heartbeats_end": det_stats,
            "detector_restarts": restarts,
            "shm_leftovers_removed": leftovers,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "method": METHOD,
        },
        "throughput": tput,
        "interleaved_runs": runs,
        "targets": targets,
        "gating": gating,
        "latency": latency,
    }
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"raw results: {args.json}")
    return 1 if errors else 0



if __name__ == "__main__":
    sys.exit(main())
