"""The embedded default configuration of ``camfleet run``: synthetic cameras, the default model."""

from __future__ import annotations

from pathlib import Path

from camfleet.config import Config, load_config_text
from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE, models_dir

_TEMPLATE = """
version: 1
data_dir: {data_dir}
models:
  ssd-mobilenet-v2:
    path: {model}
    runtime: tflite
    input: {{width: 300, height: 300}}
    labels: {labels}
detectors:
  cpu: {{runtime: tflite, processes: 1, threads: 1, max_batch: 8, max_wait_ms: 10}}
pipelines:
  default:
    - motion: {{}}
    - detect: {{model: ssd-mobilenet-v2, detector: cpu, min_score: 0.5}}
    - track: {{fps: 5, max_disappeared_s: 3}}
    - zones: {{}}
    - events: {{min_frames: 3}}
    - snapshot: {{boxes: true}}
defaults:
  detect: {{width: 640, height: 360, fps: 5}}
  pipeline: default
  record: {{enabled: true, mode: continuous, segment_seconds: 10, retain_days: {{continuous: 1}}}}
# the demo's API and web UI: this machine only, without tokens (a real configuration needs tokens:
# camfleet token create)
api: {{host: 127.0.0.1, port: {port}, open: true}}
cameras:
{cameras}
"""


def default_config(data_dir: Path, cameras: int = 4, width: int = 1280, height: int = 720,
                   fps: float = 15, port: int = 5080) -> Config:
    """``cameras`` synthetic cameras (people, a cat, a motorcycle moving) through the default pipeline.

    Frames are ``width``x``height`` at ``fps`` frames/s, analysed at 640x360, 5 fps, and recorded
    (one day kept); the API and web UI listen on ``127.0.0.1:port``, open to this machine only.
    """
    objects = ["person,cat", "person,motorcycle", "person", "cat,motorcycle"]
    cams = "\n".join(
        f"  cam{i + 1}:\n    sources: [{{url: \"synthetic://cam{i + 1}?width={width}&height={height}"
        f"&fps={fps:g}&seed={i}&objects={objects[i % len(objects)]}\", roles: [detect, record]}}]\n"
        f"    zones:\n      left: {{points: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]}}"
        for i in range(cameras)
    )
    text = _TEMPLATE.format(
        data_dir=str(data_dir.resolve()),
        model=str(models_dir() / DEFAULT_MODEL_FILE),
        labels=str(models_dir() / DEFAULT_LABELS_FILE),
        cameras=cams,
        port=port,
    )
    return load_config_text(text)
