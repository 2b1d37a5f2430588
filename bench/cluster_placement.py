"""Benchmark: the fleet's camera scheduler vs a naive place-everything-again greedy baseline.

Run from the repository root::

    .venv/bin/python bench/cluster_placement.py --quick          # 200 nodes x 4,000 cameras, < 60 s
    .venv/bin/python bench/cluster_placement.py                  # 1,000 nodes x 20,000 cameras
    .venv/bin/python bench/cluster_placement.py --json out.json  # raw results (default under artifacts/)

The pure part of issue 14's ``bench/cluster.py``: no NATS, no processes, one Python thread.
A synthetic fleet (4 sites, three node sizes, some with GPUs, some without H.265; cameras of
720p to 4K at 10-25 fps with 5 detect fps, 70 % bound to a site, 5 % needing a GPU,
anti-affinity groups of 4) is placed three ways:

* ``scratch``: every camera placed on an empty fleet;
* ``1 node lost``: the most loaded node is lost, re-plan from the previous placement;
* ``10 nodes join``: ten empty nodes register, re-plan from the previous placement.

``camfleet.cluster.placement.plan`` (spread, defaults: at most 4 rebalancing moves per pass)
runs against ``naive``: for every camera in id order, scan every node, keep the feasible one
(same rules: state, labels, codec, hardware, capacity left) with the lowest utilisation. The
naive scheduler keeps no state, so each re-plan is a placement from scratch. ``needless``
counts cameras that changed node although their node was neither lost nor leaving. Times are
the median of ``--repeat`` runs (the naive one runs once: it is slow).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _benchutil import cell as _cell
from _benchutil import cpu_model as _cpu_model
from camfleet.cluster.placement import Camera, Node, NodeState, PlacementSettings, plan

STREAMS = [(1280, 720, 15), (1280, 720, 25), (1920, 1080, 15), (1920, 1080, 25), (2560, 1440, 15),
           (3840, 2160, 10)]
SITES = "abcd"


def make_fleet(n_nodes: int, n_cams: int, seed: int = 14) -> tuple[list[Node], list[Camera]]:
    """Nodes and cameras sized so the fleet uses about 60 % of its decode, 50 % of its inference capacity."""
    rnd = random.Random(seed)
    cams = []
    for j in range(n_cams):
        w, h, fps = rnd.choice(STREAMS)
        kw: dict[str, Any] = {"codec": "h265" if rnd.random() < 0.3 else "h264", "group": f"g{j // 4}"}
        if rnd.random() < 0.7:
            kw["selector"] = {"site": SITES[(j // 4) % len(SITES)]}
        if rnd.random() < 0.05:
            kw["hardware"] = {"gpu": 1}
        cams.append(Camera.from_stream(f"cam{j:06d}", width=w, height=h, fps=fps, detect_fps=5, **kw))
    sizes = [0.5, 1.0, 2.0]
    weight = sum(sizes[i % 3] for i in range(n_nodes))
    dec_unit = sum(c.decode_pps for c in cams) / 0.6 / weight
    inf_unit = sum(c.infer_ps for c in cams) / 0.5 / weight
    nodes = []
    for i in range(n_nodes):
        size = sizes[i % 3]
        nodes.append(Node(
            f"node{i:05d}", dec_unit * size, inf_unit * size,
            labels={"site": SITES[i % len(SITES)]},
            hardware={"gpu": 8} if i % 5 == 0 else {},
            codecs=frozenset({"h264", "mjpeg"}) if i % 7 == 3 else frozenset({"h264", "h265", "mjpeg"})))
    return nodes, cams


def naive(nodes: Sequence[Node], cams: Sequence[Camera]) -> dict[str, str | None]:
    """Place every camera from scratch: for each camera, scan every node (O(cameras x nodes))."""
    ok = [n for n in nodes if n.state is NodeState.SCHEDULABLE]
    dec = {n.id: 0.0 for n in ok}
    inf = {n.id: 0.0 for n in ok}
    hw: dict[str, dict[str, int]] = {n.id: {} for n in ok}
    out: dict[str, str | None] = {}
    for c in sorted(cams, key=lambda c: c.id):
        best, best_u = None, 0.0
        for n in ok:
            if c.codec not in n.codecs or any(n.labels.get(k) != v for k, v in c.selector.items()):
                continue
            if any(hw[n.id].get(k, 0) + v > n.hardware.get(k, 0) for k, v in c.hardware.items()):
                continue
            d, i = dec[n.id] + c.decode_pps, inf[n.id] + c.infer_ps
            if d > n.decode_pps or i > n.infer_ps:
                continue
            u = max(dec[n.id] / n.decode_pps, inf[n.id] / n.infer_ps)
            if best is None or u < best_u:
                best, best_u = n, u
        out[c.id] = None if best is None else best.id
        if best is not None:
            dec[best.id] += c.decode_pps
            inf[best.id] += c.infer_ps
            for k, v in c.hardware.items():
                hw[best.id][k] = hw[best.id].get(k, 0) + v
    return out


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, list[tuple[float, float]]]:
    """``fn()``'s result and (wall s, CPU s of this process) per run."""
    times, result = [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - t, time.process_time() - c))
    return result, times


def _moved(before: Mapping[str, str | None], after: Mapping[str, str | None],
           freed: set[str]) -> tuple[int, int]:
    """Cameras placed before whose node changed, and of those the needless (node not in ``freed``)."""
    moved = [c for c, n in before.items() if n is not None and after.get(c) != n]
    return len(moved), sum(1 for c in moved if before[c] not in freed)


def _check(nodes: Sequence[Node], cams: Sequence[Camera], where: Mapping[str, str | None]) -> None:
    by_id = {n.id: n for n in nodes}
    dec: dict[str, float] = {}
    for c in cams:
        nid = where.get(c.id)
        if nid is None:
            continue
        assert by_id[nid].state is NodeState.SCHEDULABLE, (c.id, nid)
        dec[nid] = dec.get(nid, 0.0) + c.decode_pps
    for nid, used in dec.items():
        assert used <= by_id[nid].decode_pps * (1 + 1e-9), nid


def run(n_nodes: int, n_cams: int, repeat: int) -> list[dict[str, Any]]:
    """The three scenarios, scheduler and naive; one row per scenario."""
    nodes, cams = make_fleet(n_nodes, n_cams)
    s = PlacementSettings()
    rows = []

    p0, t_s = _timed(lambda: plan(nodes, cams, {}, s, now=0.0), repeat)
    w0 = {c: a.node for c, a in p0.assignments.items()}
    n0, t_n = _timed(lambda: naive(nodes, cams), 1)
    _check(nodes, cams, w0)
    rows.append(_row("scratch", t_s, t_n, w0, {}, n0, {}, set(), p0.unplaced))

    victim = max(p0.loads.values(), key=lambda ld: (ld.cameras, ld.node)).node
    lost = [Node(n.id, n.decode_pps, n.infer_ps, n.labels, n.hardware, n.codecs, NodeState.LOST)
            if n.id == victim else n for n in nodes]
    p1, t_s = _timed(lambda: plan(lost, cams, p0.assignments, s, p0.history, now=10.0), repeat)
    w1 = {c: a.node for c, a in p1.assignments.items()}
    n1, t_n = _timed(lambda: naive(lost, cams), 1)
    _check(lost, cams, w1)
    rows.append(_row("1 node lost", t_s, t_n, w1, w0, n1, n0, {victim}, p1.unplaced))

    extra = [Node(f"new{i:02d}", nodes[i].decode_pps, nodes[i].infer_ps, nodes[i].labels, nodes[i].hardware,
                  nodes[i].codecs) for i in range(10)]
    joined = nodes + extra
    p2, t_s = _timed(lambda: plan(joined, cams, p0.assignments, s, p0.history, now=10.0), repeat)
    w2 = {c: a.node for c, a in p2.assignments.items()}
    n2, t_n = _timed(lambda: naive(joined, cams), 1)
    _check(joined, cams, w2)
    rows.append(_row("10 nodes join", t_s, t_n, w2, w0, n2, n0, set(), p2.unplaced))
    return rows


def _row(name: str, t_s: list[tuple[float, float]], t_n: list[tuple[float, float]],
         w: Mapping[str, str | None], w_before: Mapping[str, str | None], n: Mapping[str, str | None],
         n_before: Mapping[str, str | None],
         freed: set[str], unplaced: Mapping[str, Any]) -> dict[str, Any]:
    moved_s, needless_s = _moved(w_before, w, freed)
    moved_n, needless_n = _moved(n_before, n, freed)
    return {"scenario": name, "scheduler_ms": statistics.median(w for w, _ in t_s) * 1e3,
            "scheduler_cpu_ms": statistics.median(c for _, c in t_s) * 1e3,
            "scheduler_runs_ms": [w * 1e3 for w, _ in t_s],
            "naive_ms": statistics.median(w for w, _ in t_n) * 1e3,
            "naive_cpu_ms": statistics.median(c for _, c in t_n) * 1e3,
            "scheduler_moved": moved_s, "scheduler_needless": needless_s, "naive_moved": moved_n,
            "naive_needless": needless_n, "scheduler_unplaced": len(unplaced),
            "naive_unplaced": sum(1 for v in n.values() if v is None)}


COLS = [("scenario", 14, "s"), ("scheduler_ms", 9, ".1f"), ("scheduler_cpu_ms", 9, ".1f"),
        ("naive_ms", 9, ".0f"), ("naive_cpu_ms", 9, ".0f"), ("speedup", 8, ".0f"),
        ("scheduler_moved", 9, "d"), ("scheduler_needless", 9, "d"), ("naive_moved", 9, "d"),
        ("naive_needless", 9, "d"), ("scheduler_unplaced", 9, "d"), ("naive_unplaced", 9, "d")]
HEADS = ["scenario", "sched ms", "cpu ms", "naive ms", "cpu ms", "speed-up", "sched mv", "needless",
         "naive mv", "needless", "sched unp", "naive unp"]


def table(rows: list[dict[str, Any]]) -> str:
    """The side-by-side table."""
    lines = ["  ".join(h.ljust(w) if f == "s" else h.rjust(w)
                       for h, (_, w, f) in zip(HEADS, COLS, strict=True))]
    for row in rows:
        cpu = row["scheduler_cpu_ms"]
        r = {**row, "speedup": row["naive_cpu_ms"] / cpu if cpu else None}
        lines.append("  ".join(_cell(r[k], w, f) for k, w, f in COLS))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="200 nodes x 4,000 cameras (< 60 s)")
    ap.add_argument("--nodes", type=int, help="nodes (default 1,000; quick 200)")
    ap.add_argument("--cameras", type=int, help="cameras (default 20,000; quick 4,000)")
    ap.add_argument("--repeat", type=int, help="scheduler runs per scenario (median; default 5, quick 3)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-cluster-placement.json"),
                    help="raw results")
    args = ap.parse_args(argv)
    n_nodes = args.nodes or (200 if args.quick else 1000)
    n_cams = args.cameras or (4000 if args.quick else 20_000)
    repeat = args.repeat or (3 if args.quick else 5)
    load_start = os.getloadavg()
    print(f"cluster placement bench: {n_nodes} nodes x {n_cams} cameras, spread, scheduler median of "
          f"{repeat} runs, naive 1 run; {os.cpu_count()} CPUs", flush=True)
    if load_start[0] > 0.5:
        print(f"note: load average {load_start[0]:.2f} before the start: other work shares the CPUs",
              flush=True)
    t0 = time.perf_counter()
    rows = run(n_nodes, n_cams, repeat)
    print(table(rows))
    print("ms: wall (median), cpu ms: this process's CPU time; speed-up: naive CPU / scheduler CPU; "
          "mv: cameras placed before that changed node; needless: of those, not on the lost node "
          "(after a join every move counts; the scheduler's are its <= 4 rebalancing moves); "
          "unp: unplaced", flush=True)
    doc = {"bench": "cluster_placement", "nodes": n_nodes, "cameras": n_cams, "repeat": repeat, "rows": rows,
           "wall_s": time.perf_counter() - t0,
           "meta": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count(),
                    "cpu_model": _cpu_model(), "loadavg_start": load_start, "loadavg_end": os.getloadavg()}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.json} ({doc['wall_s']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
