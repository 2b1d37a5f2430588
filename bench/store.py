"""Benchmark: camfleet.store event inserts and queries, 32 cameras, SQLite and PostgreSQL.

Run from the repository root::

    .venv/bin/python bench/store.py --quick          # short phases (< 60 s)
    .venv/bin/python bench/store.py                  # more events, longer query phases
    .venv/bin/python bench/store.py --json out.json  # raw results (default artifacts/bench-store.json)

Two sections, each on SQLite (a file in a temp dir, WAL) and on PostgreSQL (a throw-away
server started by camfleet_testing.pgserver, default durable settings):

1. inserts: 32 camera processes (``spawn``) each emit start + end messages for their events.
   'StoreWriter': the camfleet path, the processes send the messages over one
   multiprocessing queue to the node process, whose single StoreWriter thread batches them
   into transactions. 'naive': the baseline the issue names, every process writes its own
   messages straight to the database, one transaction per message.
2. queries: one thread runs each API query in a loop against a populated database.

See ``METHOD`` below (also printed and stored in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _benchutil import cell as _cell
from _benchutil import cpu_model as _cpu_model
from _benchutil import dist_version, summary

CAMERAS = 32
T0 = 1_700_000_000.0
BARRIER_TIMEOUT_S = 120.0

METHOD = {
    "workload": (
        "32 cameras, one spawn-context process each, started once and reused by every run; each camera "
        "emits, per event, a 'start' message and an 'end' message (camfleet.vocabulary's "
        "JSON form), events back to back with no pacing; timing starts when every process is ready "
        "(barrier) and stops when the last message is committed"
    ),
    "StoreWriter": (
        "the processes put messages on one multiprocessing.Queue; the node process takes them off and "
        "calls StoreWriter.submit (max_batch=500, max_delay_s=0.05); stop = StoreWriter.flush() returned"
    ),
    "naive": (
        "every process opens its own connection and commits each message in its own transaction (the "
        "same INSERT .. ON CONFLICT DO UPDATE the store uses). SQLite: sqlite3.connect(timeout=5.0), "
        "Python's default busy timeout, synchronous=NORMAL (the store's setting), WAL; a 'database is "
        "locked' error drops the message (counted as locked and lost). PostgreSQL: psycopg 3, one "
        "connection per process. A process stops at --naive-cap seconds (messages left are 'unsent')"
    ),
    "msgs/s": "messages committed per second over the run; ev/s = events whose end was committed per second",
    "lost": "messages sent but not in the database at the end, checked by reading it back",
    "unsent": "naive only: messages a process had not sent when it reached --naive-cap",
    "queries": (
        "one thread, each query in a loop for --qdur s after 3 warm-up calls, on a database holding "
        "--populate events over 32 cameras (labels person/car/dog, half with zone 'yard', a quarter with "
        "'door') and 32 x 200 segments, after ANALYZE; ms per call (p50, p99)"
    ),
    "settings": (
        "SQLite: WAL, synchronous=NORMAL, busy_timeout 30 s (store). PostgreSQL: initdb defaults "
        "(fsync on, synchronous_commit on), unix socket dir + TCP on 127.0.0.1, the store connects over TCP"
    ),
}


# ------------------------------------------------------------------ camera processes


def _event(cam: int, n: int, end: bool) -> dict[str, Any]:
    """An event in the outbox's JSON form (camfleet.vocabulary.Event.to_json; epoch seconds)."""
    start = T0 + n * 0.5
    return {
        "id": f"c{cam:02d}-e{n:06d}", "camera": f"cam{cam:02d}", "label": ("person", "car", "dog")[n % 3],
        "start": start, "end": start + 2.0 if end else None, "top_score": 0.9 if end else 0.6,
        "zones": ["yard"] if n % 2 else [], "snapshot": None, "retained": False,
        "data": {"track_id": n, "best_seq": n * 3},
    }


def _messages(cam: int, n_events: int) -> Any:
    for n in range(n_events):
        yield {"kind": "event", "type": "start", "event": _event(cam, n, end=False)}
        yield {"kind": "event", "type": "end", "event": _event(cam, n, end=True)}


_UPSERT_SQLITE = (
    'INSERT INTO events (id, camera, label, start, "end", top_score, zones, snapshot, retained, data) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT (id) DO UPDATE SET camera=excluded.camera, "
    'label=excluded.label, start=excluded.start, "end"=excluded."end", top_score=excluded.top_score, '
    "zones=excluded.zones, snapshot=excluded.snapshot, data=excluded.data"
)
_UPSERT_PG = _UPSERT_SQLITE.replace("?", "%s").replace("0, %s)", "false, %s)")


def _row(ev: dict[str, Any]) -> tuple[Any, ...]:
    return (ev["id"], ev["camera"], ev["label"], ev["start"], ev["end"], ev["top_score"],
            json.dumps(ev["zones"]), ev["snapshot"], json.dumps(ev["data"]))


def _naive(task: dict[str, Any], barrier: Any) -> dict[str, Any]:
    """Write this camera's messages straight to the database, one transaction each."""
    cam, n_events, cap = task["cam"], task["events"], task["cap_s"]
    locked = other = committed = attempted = 0
    first_error = None
    if task["backend"] == "sqlite":
        import sqlite3

        conn: Any = sqlite3.connect(task["path"], timeout=5.0)
        conn.execute("PRAGMA synchronous=NORMAL")
        sql = _UPSERT_SQLITE
        errors: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
    else:
        import psycopg

        conn = psycopg.connect(task["dsn"], connect_timeout=10)
        sql = _UPSERT_PG
        errors = (psycopg.Error,)
    barrier.wait(BARRIER_TIMEOUT_S)
    t0 = time.perf_counter()
    deadline = t0 + cap
    try:
        for m in _messages(cam, n_events):
            if time.perf_counter() > deadline:
                break
            attempted += 1
            try:
                conn.execute(sql, _row(m["event"]))
                conn.commit()
                committed += 1
            except errors as exc:
                with contextlib.suppress(Exception):
                    conn.rollback()
                if "locked" in str(exc) or "busy" in str(exc):
                    locked += 1
                else:
                    other += 1
                    first_error = first_error or str(exc).splitlines()[0]
    finally:
        elapsed = time.perf_counter() - t0
        conn.close()
    return {"committed": committed, "attempted": attempted, "locked": locked, "other_errors": other,
            "elapsed_s": elapsed, "first_error": first_error}


def _produce(task: dict[str, Any], barrier: Any, msg_q: Any) -> dict[str, Any]:
    """Send this camera's messages to the node over the shared queue."""
    msgs = list(_messages(task["cam"], task["events"]))
    barrier.wait(BARRIER_TIMEOUT_S)
    t0 = time.perf_counter()
    for m in msgs:
        msg_q.put(m)
    msg_q.put({"kind": "_done"})
    return {"sent": len(msgs), "elapsed_s": time.perf_counter() - t0}


def _camera_worker(cmd_q: Any, res_q: Any, msg_q: Any, barrier: Any) -> None:
    while True:
        task = cmd_q.get()
        if task is None:
            return
        try:
            res = _naive(task, barrier) if task["op"] == "naive" else _produce(task, barrier, msg_q)
        except Exception:
            res = {"error": traceback.format_exc()}
            with contextlib.suppress(Exception):
                barrier.abort()
        res_q.put((task["cam"], res))


class Cameras:
    """The 32 camera processes, reused across runs."""

    def __init__(self, ctx: Any) -> None:
        self.barrier = ctx.Barrier(CAMERAS + 1)
        self.res_q = ctx.Queue()
        self.msg_q = ctx.Queue()
        self.cmd_qs = [ctx.Queue() for _ in range(CAMERAS)]
        self.procs = [
            ctx.Process(target=_camera_worker, args=(q, self.res_q, self.msg_q, self.barrier), daemon=True,
                        name=f"bench-cam{i}")
            for i, q in enumerate(self.cmd_qs)
        ]
        for p in self.procs:
            p.start()

    def dispatch(self, make: Callable[[int], dict[str, Any]]) -> None:
        for cam, q in enumerate(self.cmd_qs):
            q.put({**make(cam), "cam": cam})

    def results(self, timeout: float) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(out) < CAMERAS:
            cam, res = self.res_q.get(timeout=max(0.1, deadline - time.monotonic()))
            out[cam] = res
        return out

    def close(self) -> None:
        for q in self.cmd_qs:
            q.put(None)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(2)


# ------------------------------------------------------------------ runs


def _count(url: str) -> tuple[int, int]:
    """(events, events with an end) in the database at ``url``."""
    from camfleet.store import Store

    store = Store.open(url, migrate=False)
    try:
        from sqlalchemy import text

        with store.engine.connect() as conn:
            total = conn.execute(text("SELECT count(*) FROM events")).scalar_one()
            ended = conn.execute(text('SELECT count(*) FROM events WHERE "end" IS NOT NULL')).scalar_one()
        return int(total), int(ended)
    finally:
        store.close()


def run_writer(cams: Cameras, backend: str, url: str, n_events: int) -> dict[str, Any]:
    from camfleet.store import Store, StoreWriter

    store = Store.open(url)
    writer = StoreWriter(store, max_batch=500, max_delay_s=0.05)
    writer.start()
    expected = CAMERAS * n_events * 2
    errors: list[str] = []
    try:
        cams.dispatch(lambda cam: {"op": "produce", "events": n_events})
        cams.barrier.wait(BARRIER_TIMEOUT_S)
        t0 = time.perf_counter()
        done = 0
        while done < CAMERAS:
            m = cams.msg_q.get(timeout=120)
            if m.get("kind") == "_done":
                done += 1
            else:
                writer.submit(m)
        flushed = writer.flush(300)
        elapsed = time.perf_counter() - t0
        if not flushed:
            errors.append("flush timed out")
        errors += [r["error"] for r in cams.results(60).values() if "error" in r]
        stats = writer.stats
    finally:
        writer.stop()
        store.close()
    total, ended = _count(url)
    committed = int(stats["written"])
    return {
        "section": "insert", "backend": backend, "variant": "writer", "errors": errors,
        "summary": {
            "msgs_s": committed / elapsed, "ev_s": ended / elapsed, "expected": expected,
            "committed": committed, "unsent": 0, "lost": expected - (total + ended), "locked": 0,
            "other_errors": int(stats["errors"]), "batches": int(stats["batches"]), "wall_s": elapsed,
            "per_batch": committed / max(1, stats["batches"]),
        },
    }


def run_naive(cams: Cameras, backend: str, url: str, n_events: int, cap_s: float) -> dict[str, Any]:
    from camfleet.store import Store
    from camfleet.store.engine import parse_url, sqlite_path

    Store.open(url).close()  # schema
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    dsn = url if path is None else None
    expected = CAMERAS * n_events * 2
    cams.dispatch(lambda cam: {"op": "naive", "backend": backend, "path": str(path), "dsn": dsn,
                               "events": n_events, "cap_s": cap_s})
    cams.barrier.wait(BARRIER_TIMEOUT_S)
    t0 = time.perf_counter()
    res = cams.results(cap_s + 120)
    del t0  # each process times its own run (from the barrier): the slowest one is the run's wall time
    elapsed = max(r.get("elapsed_s", 0.0) for r in res.values())
    errors = [r["error"] for r in res.values() if "error" in r]
    committed = sum(r.get("committed", 0) for r in res.values())
    attempted = sum(r.get("attempted", 0) for r in res.values())
    total, ended = _count(url)
    first = next((r["first_error"] for r in res.values() if r.get("first_error")), None)
    return {
        "section": "insert", "backend": backend, "variant": "naive", "errors": errors,
        "first_db_error": first,
        "summary": {
            "msgs_s": committed / elapsed if elapsed else None, "ev_s": ended / elapsed if elapsed else None,
            "expected": expected, "committed": committed, "unsent": expected - attempted,
            "lost": attempted - (total + ended),
            "locked": sum(r.get("locked", 0) for r in res.values()),
            "other_errors": sum(r.get("other_errors", 0) for r in res.values()),
            "batches": committed, "wall_s": elapsed, "per_batch": 1.0,
        },
    }


def populate(url: str, n_events: int) -> None:
    from camfleet.store import EventRecord, SegmentRecord, Store

    store = Store.open(url)
    try:
        chunk: list[EventRecord] = []
        for i in range(n_events):
            cam = i % CAMERAS
            zones = ["yard"] if i % 2 else []
            if i % 4 == 1:
                zones.append("door")
            chunk.append(EventRecord(f"p{i:07d}", f"cam{cam:02d}", ("person", "car", "dog")[i % 3],
                                     start=T0 + i * 0.1, end=T0 + i * 0.1 + 3, top_score=0.8, zones=zones,
                                     data={"track_id": i}))
            if len(chunk) >= 5000:
                store.upsert_events(chunk)
                chunk = []
        store.upsert_events(chunk)
        store.write_batch(segs=[SegmentRecord(f"cam{c:02d}", f"cam{c:02d}/{s:05d}.mp4", T0 + s * 10,
                                              T0 + s * 10 + 10, 2_000_000) for c in range(CAMERAS)
                                for s in range(200)])
        from sqlalchemy import text

        with store.engine.begin() as conn:  # statistics, as autovacuum / PRAGMA optimize would gather
            conn.execute(text("ANALYZE"))
    finally:
        store.close()


def run_queries(backend: str, url: str, n_events: int, qdur: float) -> list[dict[str, Any]]:
    from camfleet.store import Store

    store = Store.open(url)
    span = n_events * 0.1
    mid = T0 + span / 2
    i = [0]

    def cam() -> str:
        i[0] += 1
        return f"cam{i[0] % CAMERAS:02d}"

    queries: dict[str, Callable[[], object]] = {
        "latest 50, one camera": lambda: store.query_events(camera=cam(), limit=50),
        "latest 50, zone 'door'": lambda: store.query_events(zone="door", limit=50),
        "page at offset 1000": lambda: store.query_events(limit=50, offset=1000),
        "1 camera, label, 1 h": lambda: store.query_events(camera=cam(), label="car", after=mid,
                                                            before=mid + 3600, limit=100),
        "count, label + zone": lambda: store.count_events(label="car", zone="yard"),
        "get by id": lambda: store.get_event(f"p{(i[0] * 7919) % n_events:07d}"),
        "segments, 1 camera, 1 h": lambda: store.query_segments(cam(), T0, T0 + 3600),
        "segment totals": store.segment_totals,
    }
    out = []
    try:
        for name, fn in queries.items():
            for _ in range(3):
                fn()
            samples = []
            t_end = time.perf_counter() + qdur
            while True:
                t = time.perf_counter()
                if t >= t_end:
                    break
                i[0] += 1
                fn()
                samples.append(time.perf_counter() - t)
            s = summary(samples, 1000.0)
            out.append({"section": "query", "backend": backend, "variant": name, "errors": [],
                        "summary": {"qps": len(samples) / qdur, "p50": s["p50"], "p99": s["p99"],
                                    "n": s["n"]}})
    finally:
        store.close()
    return out


# ------------------------------------------------------------------ tables

LABELS = {"writer": "StoreWriter (1 writer)", "naive": "naive: 32 procs, own commits"}
INSERT_COLUMNS = [
    ("backend", 11, "s", "backend"), ("path", 30, "s", "label"), ("msgs/s", 9, ".0f", "msgs_s"),
    ("ev/s", 8, ".0f", "ev_s"), ("committed", 10, "d", "committed"),
    ("unsent", 7, "d", "unsent"), ("lost", 6, "d", "lost"),
    ("locked", 7, "d", "locked"), ("other err", 10, "d", "other_errors"), ("txns", 7, "d", "batches"),
    ("wall s", 7, ".2f", "wall_s"),
]
QUERY_COLUMNS = [
    ("query", 26, "s", "label"), ("sqlite q/s", 11, ".0f", "sqlite_qps"), ("p50 ms", 8, ".2f", "sqlite_p50"),
    ("p99 ms", 8, ".2f", "sqlite_p99"), ("pg q/s", 9, ".0f", "pg_qps"), ("p50 ms", 8, ".2f", "pg_p50"),
    ("p99 ms", 8, ".2f", "pg_p99"),
]


def _table(columns: list[tuple[str, int, str, str]], rows: list[dict[str, Any]]) -> str:
    header = " ".join(c[0].ljust(c[1]) if i < 2 and c[2] == "s" else c[0].rjust(c[1])
                      for i, c in enumerate(columns))
    lines = [header, "-" * len(header)]
    for values in rows:
        lines.append(" ".join(_cell(values.get(key), width, fmt) for _h, width, fmt, key in columns))
    return "\n".join(lines)


def insert_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r["summary"], "backend": r["backend"],
             "label": LABELS[r["variant"]] + ("!" if r["errors"] else "")} for r in results]


def query_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for r in results:
        row = rows.setdefault(r["variant"], {"label": r["variant"]})
        key = "sqlite" if r["backend"] == "sqlite" else "pg"
        for k in ("qps", "p50", "p99"):
            row[f"{key}_{k}"] = r["summary"][k]
    return list(rows.values())


def ratio_lines(results: list[dict[str, Any]]) -> list[str]:
    by = {(r["backend"], r["variant"]): r["summary"] for r in results}
    out = []
    for backend in ("sqlite", "postgresql"):
        w, n = by.get((backend, "writer")), by.get((backend, "naive"))
        if w and n and n["msgs_s"]:
            out.append(f"{backend}: StoreWriter / naive = {w['msgs_s'] / n['msgs_s']:.1f}x messages/s; "
                       f"lost {w['lost']} vs {n['lost']}; unsent at the cap {w['unsent']} vs {n['unsent']}; "
                       f"'database is locked' {w['locked']} vs {n['locked']}; "
                       f"transactions {w['batches']} vs {n['batches']}")
    return out


# ------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer events, short query phases (< 60 s)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-store.json"), help="raw results")
    ap.add_argument("--events", type=int, help="events per camera in the insert runs (2 messages each)")
    ap.add_argument("--populate", type=int, help="events in the query database")
    ap.add_argument("--qdur", type=float, help="seconds per query type")
    ap.add_argument("--naive-cap", type=float, help="seconds a naive writer process may run")
    ap.add_argument("--backends", nargs="+", choices=("sqlite", "postgresql"),
                    default=["sqlite", "postgresql"])
    args = ap.parse_args(argv)
    quick = args.quick
    args.events = args.events or (150 if quick else 1000)
    args.populate = args.populate or (10_000 if quick else 200_000)
    args.qdur = args.qdur or (0.3 if quick else 2.0)
    args.naive_cap = args.naive_cap or (6.0 if quick else 60.0)

    from camfleet_testing.pgserver import PgServer

    ctx = mp.get_context("spawn")
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    print(f"store bench: {CAMERAS} cameras x {args.events} events (2 messages each); query db "
          f"{args.populate} events; {args.qdur:g} s per query; backends {args.backends}; "
          f"{os.cpu_count()} CPUs", flush=True)
    if load_start[0] > 0.5:
        print(f"note: load average {load_start[0]:.2f} before the start: other work shares the CPUs",
              flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    inserts: list[dict[str, Any]] = []
    queries: list[dict[str, Any]] = []
    failures: list[str] = []
    pg: PgServer | None = None
    cams = Cameras(ctx)
    try:
        for backend in args.backends:
            if backend == "postgresql":
                pg = PgServer()
                pg.start()
                print(f"  postgresql {pg.bin_dir} up after {time.perf_counter() - t0:.1f} s",
                      file=sys.stderr, flush=True)

            def url(name: str, backend: str = backend, pg: PgServer | None = pg) -> str:
                if backend == "sqlite":
                    return f"sqlite:///{tmp / name / 'camfleet.db'}"
                assert pg is not None
                return pg.create_database(name)

            for variant in ("writer", "naive"):
                try:
                    if variant == "writer":
                        r = run_writer(cams, backend, url("w"), args.events)
                    else:
                        r = run_naive(cams, backend, url("n"), args.events, args.naive_cap)
                except Exception:
                    failures.append(traceback.format_exc())
                    cams.barrier.reset()
                    continue
                inserts.append(r)
                s = r["summary"]
                print(f"  {backend:<10} {LABELS[variant]:<30} {s['msgs_s']:.0f} msgs/s, lost {s['lost']}, "
                      f"unsent {s['unsent']}, "
                      f"locked {s['locked']}, {s['wall_s']:.1f} s", file=sys.stderr, flush=True)
            try:
                qurl = url("q")
                tq = time.perf_counter()
                populate(qurl, args.populate)
                print(f"  {backend:<10} populated {args.populate} events in {time.perf_counter() - tq:.1f} s",
                      file=sys.stderr, flush=True)
                queries += run_queries(backend, qurl, args.populate, args.qdur)
            except Exception:
                failures.append(traceback.format_exc())
            if pg is not None:
                pg.stop()
                pg = None
    finally:
        cams.close()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t0

    print()
    print(f"1. event inserts, {CAMERAS} camera processes x {args.events} events x 2 messages "
          "(msgs/s = messages committed per second)")
    print(_table(INSERT_COLUMNS, insert_rows(inserts)))
    print()
    print(f"2. queries, one thread, {args.populate} events + {CAMERAS * 200} segments (ms per call)")
    print(_table(QUERY_COLUMNS, query_rows(queries)))
    print()
    for line in ratio_lines(inserts):
        print(line)
    print()
    load_end = os.getloadavg()
    print(f"total {elapsed:.1f} s; load average {load_start[0]:.2f} at the start, "
          f"{load_end[0]:.2f} at the end. Columns:")
    for key, value in METHOD.items():
        print(f"  {key}: {value}")
    errors = failures + [e for r in inserts + queries for e in r.get("errors", [])]
    first_db = [r["first_db_error"] for r in inserts if r.get("first_db_error")]
    if first_db:
        print(f"\nfirst database error of a naive writer: {first_db[0]}")
    if errors:
        print(f"\n{len(errors)} error(s):")
        for e in errors:
            print("  " + e.strip().splitlines()[-1])

    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "argv": sys.argv, "quick": quick, "elapsed_s": elapsed, "python": sys.version,
            "sqlalchemy": dist_version("SQLAlchemy"), "psycopg": dist_version("psycopg"),
            "sqlite": __import__("sqlite3").sqlite_version, "platform": platform.platform(),
            "cpus": os.cpu_count(), "cpu_model": _cpu_model(), "loadavg_start": load_start,
            "loadavg_end": load_end, "cameras": CAMERAS, "events_per_camera": args.events,
            "populate": args.populate, "qdur_s": args.qdur, "naive_cap_s": args.naive_cap,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "method": METHOD,
        },
        "inserts": inserts,
        "queries": queries,
        "failures": failures,
    }
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"raw results: {args.json}")
    return 1 if errors else 0



if __name__ == "__main__":
    sys.exit(main())
