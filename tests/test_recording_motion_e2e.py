"""Motion mode keeps every second of a long motion, across a killed pipeline (issue 12, item 8).

A real node records a synthetic camera whose sprites never stop moving, in
``record.mode: motion`` with no pre/post capture, for 3 minutes; retention
passes run every 5 s (the node's own housekeeping thread, unclaimed footage
deleted 60 s after it ends); the pipeline is killed with SIGKILL half-way.
Before the fix a motion span reached the store only when motion ended, so
retention deleted the footage of this motion from minute one on.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from camfleet.config import load_config_text
from camfleet.recording.retention import RetentionManager, RetentionReport
from camfleet.runtime import Node
from camfleet.store import Store

from .support.runtime_helpers import States

# soak: 3 minutes of wall clock at a few % of a core, so scripts/test.sh runs it beside the rest
pytestmark = [pytest.mark.e2e, pytest.mark.soak]

MOTION_S = 180.0
KILL_AT_S = 90.0
SEGMENT_S = 2.0


def test_three_minutes_of_motion_survive_retention_and_a_killed_pipeline(
        tmp_path: Path, shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passes: list[RetentionReport] = []
    lock = threading.Lock()
    real_run_once = RetentionManager.run_once

    def counted(self: RetentionManager, now: float | None = None) -> RetentionReport:
        report = real_run_once(self, now)
        with lock:
            passes.append(report)
        return report

    monkeypatch.setattr(RetentionManager, "run_once", counted)
    config = load_config_text(f"""
data_dir: {tmp_path}
pipelines: {{p: [motion: {{}}]}}
runtime: {{heartbeat_timeout: 3, startup_grace: 20, backoff_initial: 0.2, backoff_max: 2}}
cameras:
  a:
    pipeline: p
    sources: [{{url: "synthetic://a?width=320&height=240&fps=10&seed=0&objects=person,cat&gop=10",
               roles: [detect, record]}}]
    detect: {{width: 320, height: 240, fps: 5}}
    record: {{enabled: true, mode: motion, segment_seconds: {SEGMENT_S}, pre_capture: 0, post_capture: 0}}
""")
    store = Store.open(config.database_url)
    node = Node(config, store=store)
    assert node._housekeeping is not None
    node._housekeeping.period_s = 5.0  # a retention pass every 5 s instead of every minute
    node.start()
    states = States(node)
    try:
        states.wait("a", "healthy", 60)
        began = time.time()
        killed = False
        while time.time() - began < MOTION_S:
            if not killed and time.time() - began >= KILL_AT_S:
                pid = node.processes()["a/pipeline"]
                assert pid is not None
                os.kill(pid, signal.SIGKILL)  # mid-motion: its span is never ended by it
                killed = True
                states.wait("a", "healthy", 30)
            time.sleep(1.0)  # the node and its processes do the work; nothing to wait on
        ended = time.time()
        with lock:
            deleted = [d for r in passes for d in r.deleted]
            n_passes = len(passes)
        segs = sorted(store.query_segments(camera="a"), key=lambda s: s.start)
    finally:
        states.close()
        node.stop()
        store.close()
    assert n_passes >= MOTION_S / 5 - 6, f"only {n_passes} retention passes ran"
    assert deleted == [], f"retention deleted footage of motion going on: {deleted[:5]}"
    assert segs, "nothing was recorded"
    # every second from the first segment to the end is in a segment whose file is there
    assert segs[0].start <= began + SEGMENT_S + 1, (segs[0].start - began)
    assert segs[-1].end >= ended - 3 * SEGMENT_S, (ended - segs[-1].end)
    holes = [(a.end, b.start) for a, b in itertools.pairwise(segs) if b.start - a.end > 0.5]
    # a recorder never stops, but the ingest restarts nothing here: no hole is expected at all
    assert holes == [], holes
    for seg in segs:
        assert (config.recordings_path / seg.path).is_file(), seg.path
