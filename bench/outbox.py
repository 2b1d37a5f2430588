"""Benchmark: events/s through the durable outbox vs the direct in-memory writer, SQLite and PostgreSQL.

Run from the repository root::

    .venv/bin/python bench/outbox.py --quick          # < 60 s
    .venv/bin/python bench/outbox.py                  # more events
    .venv/bin/python bench/outbox.py --json out.json  # raw results (default artifacts/bench-outbox.json)

Camera processes (``spawn``) each report events as fast as they can, one 'start' and one
'end' message per event, the pair produced by one frame. Three paths, same run, same database server:

* ``direct``: the node's path before the outbox. The processes put the messages' JSON form on
  one multiprocessing queue; the node process takes them off and calls
  ``StoreWriter.submit`` (in-memory queue, one writer thread batching transactions). Nothing
  is durable until the database commits; ``kill -9`` of the node loses the queue.
* ``outbox``: each process appends the frame's two messages to ``outbox.db`` in one SQLite
  transaction (WAL, synchronous=FULL: durable on return); the node's pump delivers the journal
  to the database sink (batches of 500, idempotent upserts) and advances its cursor.
* ``outbox-nofsync``: the same with ``outbox: {fsync: false}`` (synchronous=NORMAL: safe from
  ``kill -9`` of any process, not from a power cut).

Timing starts when every process is ready (barrier) and stops when the database has every
event's final state (direct: ``StoreWriter.flush``; outbox: the sink's cursor reached the
journal's end). ``append ev/s`` is how fast the cameras could make their events durable.
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
import time
from pathlib import Path
from typing import Any

from _benchutil import cell as _cell
from _benchutil import cpu_model as _cpu_model

T0 = 1_700_000_000.0


def _event(cam: int, n: int, end: bool) -> dict[str, Any]:
    """One event in the outbox's JSON form (epoch seconds)."""
    start = T0 + n * 0.5
    return {"id": f"c{cam:02d}-e{n:06d}", "camera": f"cam{cam:02d}", "label": ("person", "car", "dog")[n % 3],
            "start": start, "end": start + 2.0 if end else None, "top_score": 0.9 if end else 0.6,
            "zones": ["yard"] if n % 2 else [], "snapshot": None, "retained": False,
            "data": {"track_id": n, "best_seq": n * 3}}


def _produce(variant: str, cam: int, n_events: int, target: str, q: Any, barrier: Any, out: Any) -> None:
    """A camera process: report ``n_events`` events (start + end per frame) by ``variant``."""
    from camfleet.events import OutboxProducer
    from camfleet.vocabulary import from_json

    producer = OutboxProducer(target, fsync=variant == "outbox") if variant.startswith("outbox") else None
    barrier.wait(120)
    t0 = time.perf_counter()
    for n in range(n_events):
        pair = [{"kind": "event", "type": "start", "event": _event(cam, n, False)},
                {"kind": "event", "type": "end", "event": _event(cam, n, True)}]
        if producer is not None:
            producer.append([from_json(m) for m in pair])
        else:
            for m in pair:
                q.put(m)
    elapsed = time.perf_counter() - t0
    if producer is not None:
        producer.close()
    q.put({"kind": "_done"})
    out.put((cam, elapsed))


def _ended(url: str) -> int:
    from sqlalchemy import text

    from camfleet.store import Store

    store = Store.open(url, migrate=False)
    try:
        with store.engine.connect() as conn:
            return int(conn.execute(text('SELECT count(*) FROM events WHERE "end" IS NOT NULL')).scalar_one())
    finally:
        store.close()


def run(variant: str, url: str, work: Path, cameras: int, n_events: int) -> dict[str, Any]:
    """One timed run of ``variant`` into the database at ``url``; returns its figures."""
    from camfleet.events import Pump, PumpSettings
    from camfleet.events.dbsink import DatabaseSink
    from camfleet.store import Store, StoreWriter

    store = Store.open(url)
    journal = work / f"outbox-{variant}-{time.time_ns()}.db"
    ctx = mp.get_context("spawn")
    q, out = ctx.Queue(), ctx.Queue()
    barrier = ctx.Barrier(cameras + 1)
    procs = [ctx.Process(target=_produce, args=(variant, c, n_events, str(journal), q, barrier, out))
             for c in range(cameras)]
    writer: StoreWriter | None = None
    pump: Pump | None = None
    if variant == "direct":
        writer = StoreWriter(store, max_batch=500, max_delay_s=0.05)
        writer.start()
    else:
        from camfleet.events import Journal

        Journal(journal).close()
        pump = Pump(journal, [DatabaseSink(store)], settings=PumpSettings(batch=500, poll_s=0.01))
        pump.start()
    for p in procs:
        p.start()
    try:
        barrier.wait(120)
        t0 = time.perf_counter()
        done = 0
        while done < cameras:
            m = q.get(timeout=300)
            if m.get("kind") == "_done":
                done += 1
            elif writer is not None:
                writer.submit(m)
        ok = writer.flush(300) if writer is not None else pump.flush(300)  # type: ignore[union-attr]
        elapsed = time.perf_counter() - t0
        appends = [out.get(timeout=60)[1] for _ in range(cameras)]
    finally:
        if writer is not None:
            writer.stop()
        if pump is not None:
            pump.stop()
        for p in procs:
            p.join(30)
        store.close()
    ended = _ended(url)
    events = cameras * n_events
    return {"variant": variant, "flushed": ok, "events": events, "ended_in_db": ended,
            "wall_s": elapsed, "ev_s": ended / elapsed,
            "append_ev_s": events / max(appends) if variant != "direct" else None,
            "journal_bytes": _size(journal) + _size(Path(f"{journal}-wal"))}


def _size(p: Path) -> int:
    return p.stat().st_size if p.exists() else 0


def _database(backend: str, work: Path, pg: Any, name: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{work / (name + '.db')}"
    url: str = pg.create_database(name)
    return url


def main(argv: list[str] | None = None) -> int:
    """Run both variants on each backend, print the table, write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="fewer events (< 60 s)")
    ap.add_argument("--json", type=Path, default=Path("artifacts/bench-outbox.json"), help="raw results")
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--events", type=int, help="events per camera (2 messages each)")
    ap.add_argument("--backends", nargs="+", choices=("sqlite", "postgresql"),
                    default=["sqlite", "postgresql"])
    args = ap.parse_args(argv)
    n_events = args.events or (600 if args.quick else 3000)
    work = Path(tempfile.mkdtemp(prefix="camfleet-bench-outbox-"))
    pg = None
    results: list[dict[str, Any]] = []
    try:
        if "postgresql" in args.backends:
            from camfleet_testing.pgserver import PgServer

            pg = PgServer().start()  # default (durable) settings, like the product would run
        for backend in args.backends:
            for i, variant in enumerate(("direct", "outbox", "outbox-nofsync")):
                url = _database(backend, work, pg, f"b_{i}")
                r = run(variant, url, work, args.cameras, n_events)
                r["backend"] = backend
                results.append(r)
                print(f"  {backend:10s} {variant:7s} {r['ev_s']:9.0f} ev/s  ({r['wall_s']:.2f} s)",
                      flush=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"{'backend':<11}{'path':<16}{'events':>8}{'in DB':>8}{'wall s':>9}{'ev/s':>9}{'append ev/s':>13}")
    for r in results:
        print(f"{r['backend']:<11}{r['variant']:<16}{r['events']:>8}{r['ended_in_db']:>8}"
              f"{_cell(r['wall_s'], 9, '.2f')}{_cell(r['ev_s'], 9, '.0f')}"
              f"{_cell(r['append_ev_s'], 13, '.0f')}")
    for backend in args.backends:
        by = {r["variant"]: r for r in results if r["backend"] == backend}
        for v in ("outbox", "outbox-nofsync"):
            if v in by and "direct" in by:
                print(f"{backend}: {v} / direct = {by[v]['ev_s'] / by['direct']['ev_s']:.2f}x events/s")
    doc = {"bench": "outbox", "quick": args.quick, "cameras": args.cameras, "events_per_camera": n_events,
           "python": sys.version.split()[0], "platform": platform.platform(), "cpu": _cpu_model(),
           "cpus": os.cpu_count(), "method": __doc__, "results": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1, default=str))
    print(f"raw results: {args.json}")
    return 0 if all(r["flushed"] and r["ended_in_db"] == r["events"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
