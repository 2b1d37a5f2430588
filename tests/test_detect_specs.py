"""The model spec of a configured model is built in ``camfleet.detect.specs`` (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from camfleet.config import load_config_text
from camfleet.detect.models import DEFAULT_MODEL_FILE, DEFAULT_MODEL_ID, default_model_spec
from camfleet.detect.specs import model_spec

pytestmark = pytest.mark.unit


def test_default_model_file_gets_the_checked_builtin_spec_and_others_their_settings(tmp_path: Path) -> None:
    config = load_config_text(f"""
data_dir: {tmp_path}
models:
  ssd: {{path: {tmp_path / DEFAULT_MODEL_FILE}, runtime: tflite, input: {{width: 300, height: 300}}}}
  yolo: {{path: yolo.onnx, runtime: onnx, input: {{width: 640, height: 480}}, labels: [cat, dog]}}
detectors:
  cpu: {{runtime: tflite}}
cameras: {{}}
""")
    ssd = model_spec(config, "ssd")
    assert ssd == default_model_spec(tmp_path) and ssd.id == DEFAULT_MODEL_ID and ssd.sha256
    yolo = model_spec(config, "yolo")
    assert (yolo.id, yolo.runtime, yolo.input_size, yolo.labels, yolo.output) == (
        "yolo", "onnx", (640, 480), ("cat", "dog"), "yolov8")
    assert yolo.path == config.resolve_path("yolo.onnx")
