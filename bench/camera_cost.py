"""Benchmark: CPU seconds per frame and PSS of one camera's processes, A/B between source trees, one run.

On a shared machine throughput moves with everybody else's load; CPU time per processed frame
hardly does. This bench serves one 720p15 camera from the simulator (as ``bench/capacity.py``:
H.264, objects always moving) and runs a camfleet Node on it (detect 640x360 @ 5 fps, the full
pipeline, or with ``--work equal`` capacity.py's equal-work pipeline: detect on the whole frame,
nothing else) once per source tree given, interleaved round by round, so "before" and "after"
share the same stream, the same run and the same neighbours::

    git archive HEAD~3 src | tar -x -C /tmp/before          # the code before a change
    .venv/bin/python bench/camera_cost.py --tree before=/tmp/before/src --tree after=src --rounds 2
    .venv/bin/python bench/camera_cost.py --tree before=/tmp/before/src --tree after=src --work equal
    .venv/bin/python bench/camera_cost.py --tree after=src --py-spy /tmp/prof   # flame graphs (py-spy)
    .venv/bin/python bench/camera_cost.py --tree before=/tmp/before/src --tree after=src \
        --cams 8 --baseline --warmup 30     # memory: PSS per camera at 8 cameras vs the OpenCV loop

Per process it reports: CPU ms per frame (user + system CPU time over the window / frames: the
ingest per frame read from the camera, the pipeline per frame analysed), CPU% of one core, and
PSS (MiB; shared pages split among the processes sharing them; the forkserver the camera
processes fork from is shown on its own row). With ``--cams N`` the node runs N cameras and the
figures are per camera: each process kind's PSS summed and divided by N, split by kind of mapping
(``bench/_smaps.py``: heap, libs, shm rings, files, stacks). ``--baseline`` runs
``bench/capacity.py``'s OpenCV loop on the same N cameras in each round, and the verdict compares
PSS per camera with issue 13's target (at most 1.5x the loop's). PSS does not depend on timing, so
a loaded machine measures it as well as a quiet one; it does depend on how long the rings have run
(a packet ring is resident once it has wrapped), so give ``--warmup`` time for that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

import _smaps

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _mem_mb(p: psutil.Process) -> tuple[float | None, float | None]:
    """PSS and USS (pages only this process has) of ``p``, MiB."""
    with contextlib.suppress(psutil.Error):
        m = p.memory_full_info()
        return float(getattr(m, "pss", m.rss)) / 2**20, float(m.uss) / 2**20
    return None, None


def _cpu(p: psutil.Process) -> float | None:
    with contextlib.suppress(psutil.Error):
        t = p.cpu_times()
        return float(t.user + t.system)
    return None


def child(urls: dict[str, str], warmup: float, window: float, spy_dir: str | None,
          equal_work: bool = False) -> dict[str, Any]:
    """Run one Node (camfleet imported from this interpreter's path) on ``urls``; measure its processes.

    ``equal_work``: the node runs ``bench/capacity.py``'s equal-work pipeline (detect the whole frame,
    every analysed frame, nothing else) instead of the full one.
    """
    sys.path.insert(0, str(HERE))
    import capacity  # bench/capacity.py: the same configuration as the capacity bench
    from camfleet.runtime import Node

    run_dir = Path(tempfile.mkdtemp(prefix="camera-cost-"))
    node = Node(capacity.camfleet_config(urls, run_dir, equal_work=equal_work))
    node.start()
    out: dict[str, Any] = {"processes": {}, "n_cams": len(urls)}
    try:
        deadline = time.monotonic() + capacity.READY_TIMEOUT
        while any((s := capacity._ring_snap(c)) is None or s.delivered == 0 for c in urls):
            if time.monotonic() > deadline:
                raise TimeoutError("a camera analysed no frame")
            time.sleep(0.25)
        time.sleep(warmup)
        pids = {k: v for k, v in node.processes().items() if v is not None}
        for fs in capacity._forkservers():
            pids["forkserver"] = fs.pid
        procs = {k: psutil.Process(v) for k, v in pids.items()}
        spies = []
        if spy_dir:
            for name, p in procs.items():
                if name == "forkserver":
                    continue
                dest = Path(spy_dir) / f"{name.replace('/', '-')}.txt"
                spies.append(subprocess.Popen(
                    [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(p.pid), "-d",
                     str(int(window)), "-r", "250", "--nonblocking", "-f", "raw", "-o", str(dest)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        c0 = {k: _cpu(p) for k, p in procs.items()}
        r0 = {c: capacity._ring_snap(c) for c in urls}
        t0 = time.monotonic()
        time.sleep(window)
        c1 = {k: _cpu(p) for k, p in procs.items()}
        r1 = {c: capacity._ring_snap(c) for c in urls}
        dt = time.monotonic() - t0
        for sp in spies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sp.wait(timeout=30)
        frames: dict[str, dict[str, int]] = {}  # camera -> kind -> frames over the window
        for c in urls:
            a, b = r0[c], r1[c]
            assert a is not None and b is not None
            frames[c] = {"ingest": b.packets - a.packets, "pipeline": b.delivered - a.delivered}
        out["in_fps"] = sum(f["ingest"] for f in frames.values()) / dt / len(urls)
        out["an_fps"] = sum(f["pipeline"] for f in frames.values()) / dt / len(urls)
        total = {k: sum(f[k] for f in frames.values()) for k in ("ingest", "pipeline")}
        for name, p in procs.items():
            cam, _, kind = name.rpartition("/")
            cpu = (c1[name] - c0[name]) if c0[name] is not None and c1[name] is not None else None
            n = frames[cam].get(kind, 0) if cam in frames else total["pipeline"]
            smaps = _smaps.breakdown(p.pid)
            out["processes"][name] = {
                "cpu_pct": 100 * cpu / dt if cpu is not None else None,
                "ms_per_frame": 1000 * cpu / n if cpu is not None and n else None,
                "per": "frame read" if kind == "ingest" else "frame analysed",
                "pss_mb": _mem_mb(p)[0],
                "uss_mb": _mem_mb(p)[1],
                "rss_mb": p.memory_info().rss / 2**20,
                "smaps": smaps.as_mib() if smaps is not None else None,
            }
    finally:
        node.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
    return out


PSS_TARGET = 1.5
"""Issue 13: camfleet's PSS per camera at most this many times the OpenCV loop's."""


def _kind(name: str) -> str:
    """The process kind of a process name: 'cap1/ingest' -> 'ingest', 'detector/cpu' -> 'detector'."""
    head, _, tail = name.partition("/")
    return head if head in ("detector", "forkserver") or not tail else tail


def _mean(vals: list[float | None]) -> float | None:
    got = [v for v in vals if v is not None]
    return sum(got) / len(got) if got else None


def _f(v: float | None, fmt: str = "8.1f") -> str:
    return format(v if v is not None else float("nan"), fmt)


def by_kind(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One run's processes grouped by kind: mean CPU ms per frame and CPU%, PSS/USS and smaps per camera."""
    n = run.get("n_cams", 1)
    out: dict[str, dict[str, Any]] = {}
    for name, proc in run["processes"].items():
        k = out.setdefault(_kind(name), {"ms": [], "pct": [], "pss": 0.0, "uss": 0.0, "smaps": {}})
        k["ms"].append(proc["ms_per_frame"])
        k["pct"].append(proc["cpu_pct"])
        k["pss"] += (proc["pss_mb"] or 0.0) / n
        k["uss"] += (proc["uss_mb"] or 0.0) / n
        for kind, mib in ((proc.get("smaps") or {}).get("pss_mib") or {}).items():
            k["smaps"][kind] = k["smaps"].get(kind, 0.0) + mib / n
    return out


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    kinds = ["ingest", "pipeline", "recorder", "detector", "forkserver"]
    lines = [f"{'process kind':16} {'tree':8} {'CPU ms/frame':>13} {'CPU %':>7} {'PSS/cam':>8} "
             f"{'USS/cam':>8}   PSS MiB per camera by mapping: " + " ".join(f"{k:>6}" for k in _smaps.KINDS)
             + "   (mean of rounds; CPU: per process, mean)"]
    for kind in kinds:
        for tree, runs in results.items():
            rows = [by_kind(r).get(kind) for r in runs]
            got = [r for r in rows if r is not None]
            if not got:
                continue
            ms = _mean([_mean(r["ms"]) for r in got])
            pct = _mean([_mean(r["pct"]) for r in got])
            pss = _mean([r["pss"] for r in got])
            uss = _mean([r["uss"] for r in got])
            maps = " ".join(f"{_mean([r['smaps'].get(m) for r in got]) or 0.0:6.1f}" for m in _smaps.KINDS)
            lines.append(f"{kind:16} {tree:8} {_f(ms, '13.2f')} {_f(pct, '7.1f')} {_f(pss)} {_f(uss)}   "
                         f"{' ' * 31}{maps}")
    for tree, runs in results.items():
        lines.append(f"{tree}: in fps " + ", ".join(f"{r['in_fps']:.1f}" for r in runs)
                     + "; analysed fps " + ", ".join(f"{r['an_fps']:.1f}" for r in runs) + " (per camera)")
    return "\n".join(lines)


def pss_per_camera(run: dict[str, Any]) -> float:
    """PSS of all of a run's processes (camera processes, detectors, forkserver) / cameras, MiB."""
    return sum((p["pss_mb"] or 0.0) for p in run["processes"].values()) / run.get("n_cams", 1)


def verdict_lines(results: dict[str, list[dict[str, Any]]], baseline: list[dict[str, Any]]) -> list[str]:
    """PSS per camera of each tree, and against the OpenCV loop's (issue 13's target) when it ran."""
    base = _mean([b["summary"]["pss_mb"] / b["n_cams"] for b in baseline
                  if b.get("summary", {}).get("pss_mb")])
    lines = []
    if baseline:
        b = baseline[-1]
        lines.append(f"OpenCV loop: PSS {_f(base, '.1f')} MiB per camera at {b['n_cams']} cameras "
                     "(mean of rounds)")
        maps = b.get("smaps", {}).get("pss_mib", {})
        if maps:
            lines.append("  by mapping, per camera: " + ", ".join(
                f"{k} {v / b['n_cams']:.1f}" for k, v in maps.items()))
    for tree, runs in results.items():
        mine = _mean([pss_per_camera(r) for r in runs])
        text = f"{tree}: PSS {_f(mine, '.1f')} MiB per camera at {runs[0].get('n_cams', 1)} cameras"
        if base and mine is not None:
            ratio = mine / base
            verdict = "PASS" if ratio <= PSS_TARGET else "MISS"
            text += f" = {ratio:.2f}x the loop's: {verdict} (target <= {PSS_TARGET:g}x)"
        lines.append(text)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, serve the cameras, run each tree's Node (and the loop) round by round, print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=SRC",
                    help="a camfleet source tree (the folder with camfleet/); repeatable; default after=src")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--cams", type=int, default=1, help="cameras per node (default 1)")
    ap.add_argument("--baseline", action="store_true",
                    help="also run the OpenCV loop on the same cameras each round (PSS target)")
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--work", choices=("full", "equal"), default="full",
                    help="the pipeline: full (motion, detect, track, zones, events; default) or equal "
                         "(capacity.py's equal-work row: detect {mode: frame} only)")
    ap.add_argument("--profile", choices=("always", "typical", "still"), default="always",
                    help="scene: capacity.py's profiles (objects always moving, the default; or in the "
                         "picture 25%% of the time), or still (no object ever)")
    ap.add_argument("--py-spy", dest="spy", default=None, help="write py-spy flame graphs here (last round)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=1, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child[0]), args.warmup, args.window, args.spy,
                               equal_work=args.work == "equal")))
        return 0
    if not 1 <= args.cams <= 64:
        ap.error("--cams must be within 1..64")

    sys.path.insert(0, str(HERE))
    import multiprocessing as mp

    import capacity

    trees = dict(t.split("=", 1) for t in (args.tree or ["after=src"]))
    # a private shm directory: the rings never meet a test's or another bench's (children inherit it)
    shm = Path(tempfile.mkdtemp(prefix="camfleet-bench-cost-", dir="/dev/shm"))
    os.environ["CAMFLEET_SHM_DIR"] = str(shm)
    sim = capacity.start_sim(args.cams, {**capacity.PROFILES, "still": 0.0}[args.profile])
    urls = {c: sim.url(c) for c in capacity._camera_names(args.cams)}
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
    baseline: list[dict[str, Any]] = []
    try:
        for rnd in range(args.rounds):
            order = list(trees.items()) if rnd % 2 == 0 else list(reversed(trees.items()))
            for label, src in order:
                env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                    [str(Path(src).resolve()), str(ROOT / "testing" / "src")])}
                spy = None
                if args.spy and rnd == args.rounds - 1:
                    spy = str(Path(args.spy) / label)
                    Path(spy).mkdir(parents=True, exist_ok=True)
                cmd = [sys.executable, str(Path(__file__).resolve()), "--warmup", str(args.warmup),
                       "--window", str(args.window), "--work", args.work, "--child", json.dumps(urls)]
                if spy:
                    cmd += ["--py-spy", spy]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
                if proc.returncode:
                    print(f"{label}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                    return 1
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results[label].append(res)
                ms = {k: round(v["ms_per_frame"] or 0, 2) for k, v in res["processes"].items()}
                print(f"round {rnd + 1} {label}: PSS {pss_per_camera(res):.1f} MiB/camera; CPU ms/frame "
                      + json.dumps(ms), flush=True)
            if args.baseline:
                row = capacity.run_baseline(mp.get_context("spawn"), sim, args.cams, args.warmup, args.window)
                if row["errors"]:
                    print(f"baseline: {capacity._err_line(row['errors'][-1])}", file=sys.stderr)
                else:
                    baseline.append(row)
                    print(f"round {rnd + 1} OpenCV loop: PSS {row['summary']['pss_mb'] / args.cams:.1f} "
                          "MiB/camera", flush=True)
    finally:
        sim.close()
        shutil.rmtree(shm, ignore_errors=True)
    print(f"pipeline: {args.work}; scene profile: {args.profile}")
    print(_table(results))
    for line in verdict_lines(results, baseline):
        print(line)
    if args.json:
        doc = {"trees": results, "baseline": baseline}
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
