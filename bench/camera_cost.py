"""Benchmark: CPU seconds per frame and PSS of one camera's processes, A/B between source trees, one run.

On a shared machine throughput moves with everybody else's load; CPU time per processed frame
hardly does. This bench serves one 720p15 camera from the simulator (as ``bench/capacity.py``:
H.264, objects always moving) and runs a camfleet Node on it (detect 640x360 @ 5 fps, the full
pipeline) once per source tree given, interleaved round by round, so "before" and "after" share
the same stream, the same run and the same neighbours::

    git archive HEAD~3 src | tar -x -C /tmp/before          # the code before a change
    .venv/bin/python bench/camera_cost.py --tree before=/tmp/before/src --tree after=src --rounds 2
    .venv/bin/python bench/camera_cost.py --tree after=src --py-spy /tmp/prof   # flame graphs (py-spy)

Per process it reports: CPU ms per frame (user + system CPU time over the window / frames: the
ingest per frame read from the camera, the pipeline per frame analysed), CPU% of one core, and
PSS (MiB; shared pages split among the processes sharing them; the forkserver the camera
processes fork from is shown on its own row).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAMERA = "cap1"


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


def child(url: str, warmup: float, window: float, spy_dir: str | None) -> dict[str, Any]:
    """Run one Node (camfleet imported from this interpreter's path) on ``url``; measure its processes."""
    sys.path.insert(0, str(HERE))
    import capacity  # bench/capacity.py: the same configuration as the capacity bench
    from camfleet.runtime import Node

    run_dir = Path(tempfile.mkdtemp(prefix="camera-cost-"))
    node = Node(capacity.camfleet_config({CAMERA: url}, run_dir))
    node.start()
    out: dict[str, Any] = {"processes": {}}
    try:
        deadline = time.monotonic() + capacity.READY_TIMEOUT
        while (s := capacity._ring_snap(CAMERA)) is None or s.delivered == 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the camera analysed no frame")
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
        r0 = capacity._ring_snap(CAMERA)
        t0 = time.monotonic()
        time.sleep(window)
        c1 = {k: _cpu(p) for k, p in procs.items()}
        r1 = capacity._ring_snap(CAMERA)
        dt = time.monotonic() - t0
        for sp in spies:
            with contextlib.suppress(subprocess.TimeoutExpired):
                sp.wait(timeout=30)
        assert r0 is not None and r1 is not None
        frames = {"ingest": r1.packets - r0.packets, "pipeline": r1.delivered - r0.delivered}
        out["in_fps"] = frames["ingest"] / dt
        out["an_fps"] = frames["pipeline"] / dt
        for name, p in procs.items():
            kind = name.rsplit("/", 1)[-1]
            cpu = (c1[name] - c0[name]) if c0[name] is not None and c1[name] is not None else None
            n = frames.get(kind) or frames["pipeline"]
            out["processes"][name] = {
                "cpu_pct": 100 * cpu / dt if cpu is not None else None,
                "ms_per_frame": 1000 * cpu / n if cpu is not None and n else None,
                "per": "frame read" if kind == "ingest" else "frame analysed",
                "pss_mb": _mem_mb(p)[0],
                "uss_mb": _mem_mb(p)[1],
                "rss_mb": p.memory_info().rss / 2**20,
            }
    finally:
        node.stop()
    return out


def _table(results: dict[str, list[dict[str, Any]]]) -> str:
    names = sorted({n for runs in results.values() for r in runs for n in r["processes"]})
    lines = [f"{'process':16} {'tree':8} {'CPU ms/frame':>13} {'CPU %':>7} {'PSS MiB':>8} {'USS MiB':>8}"
             "   (mean of rounds)"]
    for name in names:
        for tree, runs in results.items():
            rows = [r["processes"][name] for r in runs if name in r["processes"]]

            def mean(key: str, rows: list[dict[str, Any]] = rows) -> float | None:
                vals = [x[key] for x in rows if x[key] is not None]
                return sum(vals) / len(vals) if vals else None
            ms, pct, pss, uss = mean("ms_per_frame"), mean("cpu_pct"), mean("pss_mb"), mean("uss_mb")
            lines.append(f"{name:16} {tree:8} {ms if ms is not None else float('nan'):13.2f} "
                         f"{pct if pct is not None else float('nan'):7.1f} "
                         f"{pss if pss is not None else float('nan'):8.1f} "
                         f"{uss if uss is not None else float('nan'):8.1f}")
    for tree, runs in results.items():
        lines.append(f"{tree}: in fps " + ", ".join(f"{r['in_fps']:.1f}" for r in runs)
                     + "; analysed fps " + ", ".join(f"{r['an_fps']:.1f}" for r in runs))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, serve the camera, run each tree's Node round by round, print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", action="append", default=[], metavar="LABEL=SRC",
                    help="a camfleet source tree (the folder with camfleet/); repeatable; default after=src")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--py-spy", dest="spy", default=None, help="write py-spy flame graphs here (last round)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--child", nargs=1, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], args.warmup, args.window, args.spy)))
        return 0

    sys.path.insert(0, str(HERE))
    import capacity

    trees = dict(t.split("=", 1) for t in (args.tree or ["after=src"]))
    sim = capacity.start_sim(1)
    results: dict[str, list[dict[str, Any]]] = {label: [] for label in trees}
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
                       "--window", str(args.window), "--child", sim.url(CAMERA)]
                if spy:
                    cmd += ["--py-spy", spy]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
                if proc.returncode:
                    print(f"{label}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
                    return 1
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                results[label].append(res)
                print(f"round {rnd + 1} {label}: " + json.dumps(
                    {k: round(v["ms_per_frame"] or 0, 2) for k, v in res["processes"].items()}), flush=True)
    finally:
        sim.close()
    print(_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
