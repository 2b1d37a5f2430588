"""Start-up checks, each triggered by a real condition: ring sizes, models, a taken port, directories."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from camfleet import framebus
from camfleet.config import Config, load_config_text
from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE
from camfleet.detect.service import DetectorClient
from camfleet.framebus.layout import KIND_FRAMES, KIND_PACKETS
from camfleet.framebus.segment import segment_path
from camfleet.ingest import IngestWorker
from camfleet.runtime.checks import (
    Problem,
    camera_ring_bytes,
    check_shm,
    preflight,
    ring_bytes,
)
from camfleet.runtime.children import ingest_config

pytestmark = pytest.mark.unit


def _config(
    tmp_path: Path, *, model: str | None = None, labels: str = "[person, cat]", extra: str = "",
    data_dir: Path | None = None, detect: str = "{width: 640, height: 360, fps: 5}",
) -> Config:
    if model is None:
        model = str(tmp_path / "model.tflite")
        Path(model).write_bytes(b"not really a model")
    return load_config_text(f"""
data_dir: {data_dir or tmp_path / "data"}
models:
  m: {{path: {model}, runtime: tflite, input: {{width: 300, height: 300}}, labels: {labels}}}
detectors:
  cpu: {{runtime: tflite}}
pipelines:
  p: [motion: {{}}, detect: {{model: m, detector: cpu}}, track: {{}}]
defaults: {{pipeline: p, detect: {detect}}}
cameras:
  cam1: {{sources: [{{url: "synthetic://cam1?width=320&height=180&fps=10", roles: [detect]}}]}}
  cam2: {{sources: [{{url: "rtsp://u:p@10.0.0.9/s", roles: [detect]}}]}}
  off: {{enabled: false, sources: [{{url: "synthetic://off", roles: [detect]}}]}}
api: {{port: 0}}
{extra}
""")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


def test_a_healthy_configuration_has_no_problems(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert preflight(config) == []
    assert config.data_path.is_dir() and config.logs_path.is_dir()
    assert list(config.data_path.iterdir()) == [config.logs_path]  # the write probes are gone


def test_problem_reads_as_message_then_fix() -> None:
    p = Problem("port", "port 1 is taken", "set `api.port`")
    assert str(p) == "port 1 is taken — set `api.port`"
    with pytest.raises(AttributeError):
        p.kind = "x"  # type: ignore[misc]


# ---------------------------------------------------------------- shared memory


def test_ring_bytes_match_the_rings_ingest_and_the_detector_client_create(tmp_path: Path) -> None:
    config = _config(tmp_path, detect="{fps: 5}")  # no detect size: the stream's own (320x180)
    need = camera_ring_bytes(config, "cam1")
    # the real ingest of that camera, as the node runs it
    stop = threading.Event()
    worker = IngestWorker(ingest_config(config, "cam1"))  # as the node's ingest process runs it
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        with framebus.subscribe("cam1", connect_timeout=30) as sub, sub.next(timeout=30) as frame:
            assert (frame.format.width, frame.format.height) == (320, 180)
        assert segment_path("cam1", KIND_FRAMES).stat().st_size == need.frames
        # the packet ring is sized from the stream's measured rate: the check counts the most it may take
        with framebus.subscribe_packets("cam1", connect_timeout=30):
            assert 0 < segment_path("cam1", KIND_PACKETS).stat().st_size <= need.packets
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    client = DetectorClient("cpu", "cam1", (300, 300))
    try:
        (ring,) = [p for p in framebus.shm_dir().iterdir() if "dq-cpu-cam1" in p.name]
        assert ring.stat().st_size == need.requests
    finally:
        client.close()
    # with a detect size, the frame ring follows it; a disabled camera needs nothing
    sized = _config(tmp_path)
    big = camera_ring_bytes(sized, "cam2").frames
    with framebus.FramePublisher("cam2", framebus.FrameFormat.packed_format(640, 360, "yuv420p"),
                                 slots=ingest_config(sized, "cam2").ring_slots):
        assert segment_path("cam2", KIND_FRAMES).stat().st_size == big
    assert set(ring_bytes(sized)) == {"cam1", "cam2"}
    assert ring_bytes(sized)["cam1"] == camera_ring_bytes(sized, "cam1").total


def test_too_little_shared_memory_says_how_much_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    required = sum(ring_bytes(config).values())
    assert check_shm(config, lambda _d: (required, 4 * required)) == []
    (problem,) = check_shm(config, lambda _d: (required - 1, 4 * required))
    assert problem.kind == "shm"
    assert f"need {required / 2**20:,.1f} MiB" in problem.message
    assert "2 camera(s)" in problem.message
    assert "CAMFLEET_SHM_DIR" in problem.fix  # the tests' shm dir is not /dev/shm
    monkeypatch.setenv("CAMFLEET_SHM_DIR", "/dev/shm")
    (problem,) = check_shm(config, lambda _d: (1 << 20, 64 << 20))
    assert "docker run --shm-size=" in problem.fix
    assert "mount -o remount,size=1G /dev/shm" in problem.fix
    monkeypatch.setenv("CAMFLEET_SHM_DIR", str(tmp_path / "no-such-dir"))
    (problem,) = check_shm(config)  # the real statvfs
    assert "is not usable" in problem.message


def test_segments_a_crashed_run_left_count_as_free(tmp_path: Path) -> None:
    config = _config(tmp_path)
    required = sum(ring_bytes(config).values())
    packets = camera_ring_bytes(config, "cam1").packets
    assert check_shm(config, lambda _d: (required - packets, 4 * required)) != []
    with framebus.PacketPublisher("cam1", capacity=ingest_config(config, "cam1").packet_capacity):
        assert check_shm(config, lambda _d: (required - packets, 4 * required)) == []


# ---------------------------------------------------------------- models


def test_missing_default_model_says_camfleet_models_fetch(tmp_path: Path) -> None:
    models = tmp_path / "models"
    config = _config(tmp_path, model=str(models / DEFAULT_MODEL_FILE),
                     labels=str(models / DEFAULT_LABELS_FILE))
    (problem,) = preflight(config, check_port=False)
    assert problem.kind == "model"
    assert str(models / DEFAULT_MODEL_FILE) in problem.message
    assert str(models / DEFAULT_LABELS_FILE) in problem.message
    assert "camfleet models fetch" in problem.fix
    assert "copy the files to" in problem.fix  # not where `models fetch` puts them


def test_damaged_default_model_says_fetch_force(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / DEFAULT_MODEL_FILE).write_bytes(b"truncated download")
    (models / DEFAULT_LABELS_FILE).write_text("0 person\n")
    config = _config(tmp_path, model=str(models / DEFAULT_MODEL_FILE),
                     labels=str(models / DEFAULT_LABELS_FILE))
    (problem,) = preflight(config, check_port=False)
    assert "sha256" in problem.message and "camfleet models fetch --force" in problem.fix


def test_missing_user_model_names_the_path(tmp_path: Path) -> None:
    config = _config(tmp_path, model="models/yolo.tflite", labels="labels.txt")  # relative: under data_dir
    model, labels = preflight(config, check_port=False)
    assert model.kind == labels.kind == "model"
    assert str(tmp_path / "data" / "models" / "yolo.tflite") in model.message
    assert "models.m.path" in model.fix
    assert str(tmp_path / "data" / "labels.txt") in labels.message and "models.m.labels" in labels.fix


# ---------------------------------------------------------------- the API port


def test_a_listening_socket_on_the_api_port_is_a_problem(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    config = load_config_text(_yaml_with(tmp_path, f"api: {{host: 127.0.0.1, port: {port}}}"))
    (problem,) = preflight(config)
    assert problem.kind == "port"
    assert str(port) in problem.message and "`api.port`" in problem.fix
    assert preflight(config, check_port=False) == []
    listener.close()
    assert preflight(config) == []
    disabled = load_config_text(_yaml_with(tmp_path, f"api: {{enabled: false, port: {port}}}"))
    assert preflight(disabled) == []


def test_a_bound_socket_on_the_api_port_is_a_problem(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening, no SO_REUSEADDR
        port = sock.getsockname()[1]
        text = f"api: {{port: {port}}}"
        config = load_config_text(_yaml_with(tmp_path, text))
        assert [p.kind for p in preflight(config)] == ["port"]


def _yaml_with(tmp_path: Path, api: str) -> str:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    return f"""
data_dir: {tmp_path / "data"}
models: {{m: {{path: {model}, runtime: tflite, input: {{width: 300, height: 300}}}}}}
detectors: {{cpu: {{runtime: tflite}}}}
pipelines: {{p: [detect: {{model: m, detector: cpu}}]}}
cameras: {{c: {{pipeline: p, sources: [{{url: "synthetic://c", roles: [detect]}}]}}}}
{api}
"""


# ---------------------------------------------------------------- directories


def test_a_data_dir_that_cannot_be_created_is_a_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = _config(tmp_path, data_dir=blocker / "sub")
    problems = preflight(config, check_port=False)
    # the logs directory under it fails for the same reason: said once
    assert [p.kind for p in problems] == ["data_dir"]
    assert str(blocker / "sub") in problems[0].message
    assert "`data_dir`" in problems[0].fix and "permissions" in problems[0].fix


def test_a_logs_dir_that_cannot_be_created_is_a_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = _config(tmp_path, extra=f"logging: {{dir: {blocker / 'logs'}}}")
    (problem,) = preflight(config, check_port=False)
    assert problem.kind == "logs_dir" and str(blocker / "logs") in problem.message
    assert "`logging.dir`" in problem.fix


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_a_read_only_data_dir_is_a_problem(tmp_path: Path) -> None:
    data = tmp_path / "ro"
    data.mkdir(mode=0o500)
    try:
        config = _config(tmp_path, data_dir=data)
        assert [p.kind for p in preflight(config, check_port=False)] == ["data_dir"]
    finally:
        data.chmod(0o700)
