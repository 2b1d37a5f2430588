"""A node with a store: events and segments arrive through the single writer; a killed recorder heals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import av
import pytest

from camfleet.config import load_config_text
from camfleet.runtime import Node
from camfleet.store import Store

from .support.runtime_helpers import States, camera_yaml, config_text

pytestmark = [pytest.mark.e2e, pytest.mark.beside]

RECORD = "    record: {enabled: true, segment_seconds: 2}\n"


def test_events_and_segments_reach_the_store_and_a_killed_recorder_heals(
        tmp_path: Path, shm_dir: Path) -> None:
    cams = camera_yaml("a", 0, extra=RECORD) + camera_yaml("b", 1)
    config = load_config_text(config_text(tmp_path, cams))
    store = Store.open(config.database_url)
    node = Node(config, store=store)
    node.start()
    states = States(node)
    try:
        states.wait("a", "healthy", 60)
        assert set(node.status().cameras["a"].processes) == {"ingest", "pipeline", "recorder"}
        assert set(node.status().cameras["b"].processes) == {"ingest", "pipeline"}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(store.query_segments(camera="a")) < 2:
            time.sleep(0.25)  # segments are written by another process; nothing to wait on here
        assert len(store.query_segments(camera="a")) >= 2
        pid = node.processes()["a/recorder"]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        states.wait("a", lambda s: s != "healthy", 5)
        states.wait("a", "healthy", 5)
        count = len(store.query_segments(camera="a"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(store.query_segments(camera="a")) < count + 2:
            time.sleep(0.25)
        segments = store.query_segments(camera="a")
        assert len(segments) >= count + 2, "recording did not resume after the recorder was killed"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not store.query_events():
            time.sleep(0.25)
        events = store.query_events()
        assert events and {e.camera for e in events} <= {"a", "b"}
    finally:
        states.close()
        node.stop()
        store.close()
    assert store.query_segments(camera="b") == []
    for seg in segments:  # every indexed file is there and plays
        path = config.recordings_path / seg.path
        assert path.exists(), seg
        with av.open(str(path)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames > 0, seg
    assert list(shm_dir.iterdir()) == []
