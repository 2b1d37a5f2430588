"""Process kinds, the detectors/models a camera uses, and the reconcile plan built on them (pure logic)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from camfleet.config import Config, RuntimeSettings, load_config_text
from camfleet.detect.protocol import request_ring_bytes
from camfleet.pipeline.detect import DetectConfig
from camfleet.pipeline.registry import BUILTINS, available, builtin_modules
from camfleet.runtime import heartbeat as hb
from camfleet.runtime import reconcile
from camfleet.runtime.detect_use import DetectUse, detect_uses, detector_instances, detector_models
from camfleet.runtime.kinds import (
    CAMERA_KINDS,
    DETECTOR,
    INGEST,
    PIPELINE,
    RECORDER,
    RingBytes,
    Sample,
    camera_kinds,
    camera_rings,
)

pytestmark = pytest.mark.unit

BASE = """
data_dir: {data_dir}
models:
  ssd: {{path: /models/ssd.tflite, runtime: tflite, input: {{width: 300, height: 300}}}}
  ssd-mobilenet-v2: {{path: /models/other.tflite, runtime: tflite, input: {{width: 320, height: 320}}}}
  big: {{path: /models/big.onnx, runtime: onnx, input: {{width: 640, height: 640}}}}
detectors:
  cpu: {{runtime: tflite, threads: 1}}
  gpu: {{runtime: onnx, threads: 2, processes: 2}}
pipelines:
  plain:
    - motion: {{}}
    - detect: {{}}
    - track: {{}}
  named:
    - detect: {{model: ssd, detector: cpu}}
    - detect: {{model: big, detector: gpu, min_score: 0.4}}
  none:
    - motion: {{}}
defaults: {{detect: {{width: 320, height: 240, fps: 5}}}}
cameras:
  a:
    pipeline: plain
    sources: [{{url: "synthetic://a?width=320&height=240", roles: [detect]}}]
  b:
    pipeline: named
    sources: [{{url: "synthetic://b?width=640&height=480", roles: [detect]}}]
    record: {{enabled: true, segment_seconds: 10}}
  c:
    pipeline: none
    enabled: false
    sources: [{{url: "synthetic://c", roles: [detect]}}]
"""


def config(tmp_path: Path, **replace: str) -> Config:
    text = BASE.format(data_dir=tmp_path)
    for old, new in replace.items():
        text = text.replace(old.replace("__", " "), new)
    return load_config_text(text)


def test_detect_uses_reads_the_defaults_from_the_detect_element_config(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    default = DetectConfig()
    assert detect_uses(cfg, "a") == [DetectUse(default.detector, default.model)]
    assert detect_uses(cfg, "a") == [("cpu", "ssd-mobilenet-v2")]
    assert detect_uses(cfg, "b") == [("cpu", "ssd"), ("gpu", "big")]
    assert detect_uses(cfg, "c") == []


def test_detector_models_of_enabled_cameras_refuse_two_models_on_one_detector(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"a:\n    pipeline: plain": "a:\n    pipeline: none"})
    assert detector_models(cfg) == {"cpu": "ssd", "gpu": "big"}
    with pytest.raises(ValueError, match="detector 'cpu' is asked to run two models"):
        detector_models(config(tmp_path))  # a's default model on cpu, b's ssd on cpu


def test_detector_instances() -> None:
    assert detector_instances("cpu", 1) == ["cpu"]
    assert detector_instances("gpu", 3) == ["gpu-0", "gpu-1", "gpu-2"]


def test_camera_kinds_follow_enabled_and_record(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert camera_kinds(cfg, "a") == [INGEST, PIPELINE]
    assert camera_kinds(cfg, "b") == [INGEST, PIPELINE, RECORDER]
    assert camera_kinds(cfg, "c") == []
    assert CAMERA_KINDS == (INGEST, PIPELINE, RECORDER)
    assert [k.name for k in (*CAMERA_KINDS, DETECTOR)] == ["ingest", "pipeline", "recorder", "detector"]


def test_kinds_compare_by_class_and_survive_pickling() -> None:
    for kind in (*CAMERA_KINDS, DETECTOR):
        copy = pickle.loads(pickle.dumps(kind))
        assert copy == kind and hash(copy) == hash(kind) and copy is not kind
    assert INGEST != PIPELINE
    assert PIPELINE.takes_updates and PIPELINE.uses_detectors
    assert not (INGEST.takes_updates or RECORDER.takes_updates or INGEST.uses_detectors)
    assert DETECTOR.stop_rank > max(k.stop_rank for k in CAMERA_KINDS)  # detectors stop last


@pytest.mark.parametrize(("old", "new", "changed"), [
    ("b?width=640&height=480", "b?width=640&height=480&fps=7", {INGEST, RECORDER}),
    ("gpu: {runtime: onnx, threads: 2", "gpu: {runtime: onnx, threads: 4", {PIPELINE}),
    ("min_score: 0.4", "min_score: 0.6", set()),  # element settings alone: applied live
    ("segment_seconds: 10", "segment_seconds: 20", {RECORDER}),
    ("fps: 5}}", "fps: 10}}", {INGEST, PIPELINE}),
])
def test_each_kind_restarts_only_on_its_own_signature(tmp_path: Path, old: str, new: str,
                                                      changed: set[object]) -> None:
    before, after = config(tmp_path), config(tmp_path, **{old.replace(" ", "__"): new})
    restarted = {k for k in camera_kinds(before, "b") if k.signature(before, "b") != k.signature(after, "b")}
    assert restarted == changed


def test_reconcile_plan_speaks_in_kinds(tmp_path: Path) -> None:
    before = config(tmp_path)
    after = config(tmp_path, **{"segment_seconds: 10": "segment_seconds: 20",
                                "min_score: 0.4": "min_score: 0.5"})
    plan = reconcile.plan(before, after)
    assert list(plan.cameras) == ["b"]
    assert plan.cameras["b"].restart == [RECORDER]
    assert plan.cameras["b"].update  # the pipeline takes the new element settings live
    off = config(tmp_path, **{"record: {enabled: true": "record: {enabled: false"})
    assert reconcile.plan(before, off).cameras["b"].stop == [RECORDER]


def test_named_counters_per_kind() -> None:
    counters = [0.0] * 8
    counters[hb.FRAMES], counters[hb.PACKETS], counters[hb.EXTRA] = 100, 120, 300
    sample = Sample(tuple(counters), {hb.FRAMES: 5.0, hb.EXTRA: 10.0}, {"inference_ms": 12.5})
    assert INGEST.metrics(sample) == {"frames": 100, "fps": 5.0, "packets": 120, "decoded": 300,
                                      "decode_fps": 10.0, "corrupt": 0.0, "corrupt_fps": 0.0}
    assert PIPELINE.metrics(sample)["inference_ms"] == 12.5 and PIPELINE.metrics(sample)["updates"] == 300
    assert RECORDER.metrics(sample) == {"frames": 100, "packets": 100, "segments": 300}
    det = [0.0] * 4
    det[DETECTOR.BATCHES], det[DETECTOR.IMAGES] = 4, 10
    det[DETECTOR.INFER_MS], det[DETECTOR.QUEUED] = 80, 2
    assert DETECTOR.metrics(Sample(tuple(det))) == {"batches": 4, "images": 10, "queued": 2,
                                                    "mean_batch": 2.5, "inference_ms": 20.0}
    assert INGEST.metrics(Sample())["frames"] == 0.0  # nothing reported yet


def _beat(age: float | None, busy: float | None = None) -> hb.Beat:
    return hb.Beat(pid=1, age_s=age, state=hb.OK, reason="", counters=(), busy_s=busy)


def test_when_a_process_counts_as_hung() -> None:
    rt = RuntimeSettings(heartbeat_timeout=3)
    assert PIPELINE.kill_reason(_beat(1.0), rt, None) is None
    assert "no heartbeat for 3.5 s" in (PIPELINE.kill_reason(_beat(3.5), rt, None) or "")
    assert DETECTOR.kill_reason(_beat(0.1, busy=0.5), rt, 1.0) is None
    stuck = DETECTOR.kill_reason(_beat(0.1, busy=1.5), rt, 1.0)
    assert stuck == "stuck in one inference for more than 1 s"
    assert DETECTOR.kill_reason(_beat(4.0), rt, 1.0) is None  # a detector may go 5 s without a beat
    assert "stopped beating" in (DETECTOR.kill_reason(_beat(5.5), rt, 1.0) or "")


def test_ring_sizes_come_from_the_kinds(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    b = camera_rings(cfg, "b")
    assert b.frames > 0 and b.packets > 0
    # one request ring per detector, at its model's input size
    assert b.requests == request_ring_bytes((300, 300)) + request_ring_bytes((640, 640))
    assert RECORDER.rings(cfg, "b") == RingBytes()
    assert camera_rings(cfg, "a").requests == request_ring_bytes((320, 320))
    assert b.total == b.frames + b.packets + b.requests


def test_the_registry_owns_the_builtin_element_list() -> None:
    assert set(BUILTINS) <= set(available())
    assert builtin_modules() == [f"camfleet.pipeline.{t.partition(':')[0]}" for t in BUILTINS.values()]
    assert all(available()[name].name == name for name in BUILTINS)
