"""bench/detect.py's camera processes of the throughput section (both sides), in a module of their own.

They fork from the detectors' fork server (camfleet's), named with camfleet's process prefix, so they
do not import bench/detect.py again as their main module (multiprocessing's default: with 2 x 8 of
them on 2 cores, that import took ~10 s of a quick run's minute); so their target lives here, where
the fork server finds it by name.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
import traceback
from typing import Any

import numpy as np

from camfleet.detect import default_model_spec, load_runtime
from camfleet.detect.service import DetectorClient
from camfleet.runtime.forkmain import PROCESS_PREFIX

MODEL_IN = (300, 300)
"""The default model's input size (width, height)."""
WARMUP = 3
"""Requests each camera process sends before it reports ready (the runtime's caches, the connection)."""
PROCESS_NAME = PROCESS_PREFIX + "bench-{side}{i}"
"""Process names: camfleet's prefix, whose processes the fork server prepares without ``__main__``."""


def _test_images(seed: int, n: int = 8) -> list[np.ndarray]:
    """Camera ``seed``'s model-sized RGB pictures (rendered in each camera process: in parallel)."""
    from camfleet.ingest.scene import Scene  # skimage: only where needed

    scene = Scene(MODEL_IN[0], MODEL_IN[1], seed=seed)
    return [scene.render_rgb(7 * i) for i in range(n)]


def side_worker(conn: Any, spec: dict[str, Any], go: Any, mode: Any, busy: Any, stop: Any) -> None:
    """One camera of one side, alive for the whole camera count: it works only while ``go`` is set.

    Baseline side: its own runtime, one request at a time. Shared side: one client per detector;
    ``mode`` (set by the parent before ``go``) says which detector and how many requests in flight.
    Each request's (mode, start, end) in monotonic seconds (one clock for every process) is kept.
    """
    runtime: Any = None
    clients: list[DetectorClient] = []
    try:
        images = _test_images(spec["seed"])
        if spec["side"] == "own":
            runtime = load_runtime(default_model_spec(), threads=1)
            for i in range(WARMUP):
                runtime.infer([images[i % len(images)]])
        else:
            clients = [DetectorClient(d, spec["camera"], MODEL_IN, timeout=60) for d in spec["detectors"]]
            for c in clients:
                for i in range(WARMUP):
                    c.detect([images[i % len(images)]])
        conn.send(("ready", os.getpid()))
        records: list[tuple[int, float, float]] = []
        sent = 0
        while not stop.is_set():
            if not go.wait(0.2):
                continue
            m = int(mode.value)
            with busy.get_lock():
                busy.value += 1
            try:
                if runtime is not None:
                    while go.is_set():
                        s = time.monotonic()
                        runtime.infer([images[sent % len(images)]])
                        records.append((m, s, time.monotonic()))
                        sent += 1
                else:
                    client, inflight = clients[m // 10], m % 10
                    pending: collections.deque[tuple[int, float]] = collections.deque()
                    while go.is_set() or pending:  # the last answers drain before the slot is over
                        while go.is_set() and len(pending) < inflight:
                            pending.append((client.submit([images[sent % len(images)]]), time.monotonic()))
                            sent += 1
                        if pending:
                            rid, s = pending.popleft()
                            client.result(rid)
                            records.append((m, s, time.monotonic()))
            finally:
                with busy.get_lock():
                    busy.value -= 1
        conn.send(("result", records))
    except Exception:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
    finally:
        for c in clients:
            c.close()
        if runtime is not None:
            runtime.close()
        conn.close()
