"""The node runtime's first slice: real processes for two synthetic cameras."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from camfleet.config import load_config_text
from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE, models_dir
from camfleet.detect.service import read_heartbeat
from camfleet.runtime import Node

pytestmark = pytest.mark.e2e


def test_two_detector_processes_share_the_cameras(tmp_path: Path, shm_dir: Path) -> None:
    cams = "\n".join(
        f"  cam{i}:\n    sources: [{{url: \"synthetic://cam{i}?width=640&height=360&fps=10&seed={i}"
        f"&objects=person\", roles: [detect]}}]" for i in range(2)
    )
    config = load_config_text(f"""
data_dir: {tmp_path}
models:
  ssd: {{path: {models_dir() / DEFAULT_MODEL_FILE}, runtime: tflite, input: {{width: 300, height: 300}},
        labels: {models_dir() / DEFAULT_LABELS_FILE}}}
detectors:
  cpu: {{runtime: tflite, processes: 2, threads: 1}}
pipelines:
  p:
    - motion: {{}}
    - detect: {{model: ssd, detector: cpu}}
    - track: {{fps: 5}}
    - events: {{min_frames: 2}}
defaults: {{pipeline: p, detect: {{fps: 5}}}}
cameras:
{cams}
""")
    node = Node(config)
    node.start()
    events = tmp_path / "events.jsonl"
    try:
        procs = node.processes()
        assert {"detector/cpu-0", "detector/cpu-1", "cam0/ingest", "cam0/pipeline",
                "cam1/ingest", "cam1/pipeline"} <= set(procs)
        deadline = time.monotonic() + 60
        cameras: set[str] = set()
        while time.monotonic() < deadline and cameras != {"cam0", "cam1"}:
            time.sleep(0.5)  # other processes write the file: nothing to wait on
            if events.exists():
                cameras = {json.loads(x)["camera"] for x in events.read_text().splitlines()}
        assert cameras == {"cam0", "cam1"}
        # each detector process served one camera
        beats = [read_heartbeat(f"cpu-{i}") for i in range(2)]
        assert all(b is not None and b.images > 0 for b in beats), beats
    finally:
        node.stop()
    assert list(shm_dir.iterdir()) == []
