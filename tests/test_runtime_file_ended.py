"""A file source without ``loop`` that reaches its end: the camera is ``ended``, never played again."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import numpy as np
import pytest

from camfleet.config import load_config_text
from camfleet.runtime import Node

from .support.runtime_helpers import States

pytestmark = [pytest.mark.e2e, pytest.mark.beside]

SECONDS = 3
FPS = 10


def _clip(path: Path) -> Path:
    """A short H.264 file with a moving square (SECONDS long at FPS)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"g": str(FPS)})
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(SECONDS * FPS):
            img = np.zeros((240, 320, 3), np.uint8)
            img[60:140, 10 * i % 240:10 * i % 240 + 80] = 255
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return path


def test_file_without_loop_ends_and_is_not_restarted(tmp_path: Path, shm_dir: Path) -> None:
    clip = _clip(tmp_path / "once.mp4")
    config = load_config_text(f"""
data_dir: {tmp_path}
pipelines:
  p: [{{motion: {{}}}}]
defaults: {{pipeline: p, detect: {{width: 320, height: 240, fps: {FPS}}}}}
runtime: {{heartbeat_timeout: 3, startup_grace: 20, backoff_initial: 0.2, backoff_max: 1}}
cameras:
  film:
    sources: [{{url: "{clip}", roles: [detect], realtime: true}}]
    record: {{enabled: true, segment_seconds: 1}}
""")
    node = Node(config)
    states = States(node)
    node.start()
    try:
        states.wait("film", "ended", SECONDS + 30)
        time.sleep(3.0)  # several restart delays (0.2 s): an ended file must not start again
        cam = node.status().cameras["film"]
        assert cam.state == "ended", cam
        assert cam.ended_at is not None and time.time() - 30 < cam.ended_at <= time.time()
        assert "ended" in cam.reason, cam.reason
        assert cam.restarts == 0, cam
        for proc in cam.processes.values():  # the pipeline and the recorder finished with their source
            assert proc.state == "ended" and proc.pid is None and proc.restarts == 0, proc
        assert [s for _, c, s in states.history if c == "film"].count("ended") == 1, states.history
        # status.json (what `camfleet status` and the API read) says it too
        snap = json.loads(node.status_path.read_text())
        assert snap["cameras"]["film"]["state"] == "ended" and snap["cameras"]["film"]["ended_at"]
    finally:
        node.stop()
    # the recorder was stopped cleanly: its segments are complete files, none left as .part
    files = list(config.recordings_path.rglob("*.mp4*"))
    assert files and all(f.suffix == ".mp4" for f in files), files
    assert list(shm_dir.iterdir()) == []
