"""Damaged streams are seen: frames decoded from damaged data are counted, flagged and rated.

An H.264 file with 0.25 % of its bytes flipped (past the stream headers,
deterministically) decodes to the end without an exception, because FFmpeg
conceals the damage; ingest must still count those frames, publish them with
FrameFlags.CORRUPT, rate them, and call the stream degraded past the
source's threshold. The simulator's RTP packet corruption does the same live.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from camfleet import framebus as fb
from camfleet.cli.main import app
from camfleet.ingest import IngestConfig, IngestStatus, IngestWorker, SourceOptions
from camfleet.ingest.corruption import CorruptionMeter
from camfleet_testing.sim import CameraSpec, SimServer

pytestmark = [pytest.mark.process, pytest.mark.beside]

FLIP_FRACTION = 0.0025
HEADER_BYTES = 4096  # x264's SPS, PPS and settings SEI fit well inside this


def write_h264(path: Path, frames: int = 100, width: int = 320, height: int = 240) -> None:
    """An Annex B H.264 file of a moving pattern, 25 fps, a keyframe every second."""
    yy, xx = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "25"}
        for i in range(frames):
            img = np.zeros((height, width, 3), np.uint8)
            img[..., 0] = (xx + 2 * i) % 256
            img[..., 1] = (yy + i) % 256
            img[..., 2] = ((xx + yy) // 2) % 256
            x0 = (4 * i) % (width - 40)
            img[100:140, x0:x0 + 40] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def flip_bytes(src: Path, dst: Path, fraction: float = FLIP_FRACTION, seed: int = 12) -> int:
    """Copy ``src`` to ``dst`` with ``fraction`` of the bytes past the headers inverted; returns how many."""
    data = bytearray(src.read_bytes())
    count = max(1, int(len(data) * fraction))
    for pos in random.Random(seed).sample(range(HEADER_BYTES, len(data)), count):
        data[pos] ^= 0xFF
    dst.write_bytes(bytes(data))
    return count


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("clips")
    clean, damaged = root / "clean.h264", root / "damaged.h264"
    write_h264(clean)
    assert flip_bytes(clean, damaged) > 100
    return clean, damaged


def ingest_file(path: Path, key: str, *, realtime: bool = False, threshold: float = 30.0,
                ring_slots: int = 8) -> IngestStatus:
    """Run ingest over ``path`` to its end (bounded) and return the final status."""
    cfg = IngestConfig(url=str(path), key=key, ring_slots=ring_slots,
                       source=SourceOptions(realtime=realtime, corrupt_degraded_per_min=threshold))
    worker = IngestWorker(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    thread.join(30)
    stop.set()
    thread.join(5)
    assert not thread.is_alive(), "ingest did not finish the file"
    return worker.status()


# ---- the meter ---------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.unit
def test_meter_rates_window_and_threshold() -> None:
    clock = FakeClock()
    meter = CorruptionMeter(degraded_per_min=30, clock=clock)
    assert meter.degraded() is None and meter.per_second == 0
    for _ in range(25):
        meter.corrupt_frame()
    for _ in range(5):
        meter.rejected_packet()
    assert (meter.corrupt_frames, meter.rejected_packets) == (25, 5)
    assert meter.per_second == 3.0  # 30 damaged frames over the 10 s window
    assert meter.per_minute == 30
    assert meter.degraded() is None  # 30 is not above 30
    meter.corrupt_frame()
    assert meter.degraded() == "corrupt stream: 31 frames/min"
    clock.t += 30
    assert meter.per_second == 0 and meter.per_minute == 31
    clock.t += 31
    assert meter.per_minute == 0 and meter.degraded() is None
    assert meter.corrupt_frames == 26  # totals never decrease


@pytest.mark.unit
def test_meter_threshold_zero_never_degrades() -> None:
    meter = CorruptionMeter(degraded_per_min=0)
    for _ in range(1000):
        meter.corrupt_frame()
    assert meter.degraded() is None


# ---- damaged files -----------------------------------------------------------------------------------


def test_clean_file_has_no_corrupt_frames(clips: tuple[Path, Path]) -> None:
    st = ingest_file(clips[0], "clean")
    assert st.decoded == 100
    assert (st.corrupt_frames, st.rejected_packets, st.degraded) == (0, 0, None)


def test_damaged_file_is_counted_and_degraded(clips: tuple[Path, Path]) -> None:
    st = ingest_file(clips[1], "damaged")
    assert st.decoded > 50  # the decoder conceals: most frames still come out
    assert st.corrupt_frames >= 20, st
    assert st.corrupt_per_min == st.corrupt_frames + st.rejected_packets
    assert st.corrupt_fps > 0
    assert st.degraded == f"corrupt stream: {st.corrupt_per_min} frames/min"


def test_threshold_comes_from_the_source_options(clips: tuple[Path, Path]) -> None:
    st = ingest_file(clips[1], "damaged-lenient", threshold=100_000)
    assert st.corrupt_frames >= 20 and st.degraded is None


def test_frames_from_damaged_data_are_flagged_in_the_ring(clips: tuple[Path, Path]) -> None:
    flags: list[fb.FrameFlags] = []
    ready = threading.Event()

    def read() -> None:
        with fb.subscribe("flags", "sequential", connect_timeout=10) as sub:
            ready.set()
            try:
                while True:
                    try:
                        with sub.next(timeout=3) as frame:
                            flags.append(frame.flags)
                    except fb.Overrun:
                        continue  # a reader starved by a busy machine goes on from the oldest frame kept
            except (fb.PublisherGone, fb.FrameTimeout):
                pass  # the file ended

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    # paced, so the reader sees the frames; slots for 2.5 s of them, so a starved reader loses none
    st = ingest_file(clips[1], "flags", realtime=True, ring_slots=64)
    reader.join(10)
    assert ready.is_set() and not reader.is_alive()
    corrupt = [f for f in flags if f & fb.FrameFlags.CORRUPT]
    assert len(flags) > 50
    assert len(corrupt) >= 20, (len(corrupt), st)
    assert len(corrupt) <= st.corrupt_frames


def test_cli_ingest_reports_corrupt_frames(clips: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(app, ["ingest", str(clips[1]), "--key", "cli-damaged"])
    assert result.exit_code == 0, result.output
    line = [x for x in result.output.splitlines() if x.startswith("decoded ")][-1]
    assert " 0 corrupt" not in line and "corrupt (decoded from damaged data)" in line, line
    assert "degraded: corrupt stream:" in line, line


# ---- the simulator's packet corruption -------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    spec = CameraSpec(name="noisy", codec="h264", width=320, height=180, fps=15, bitrate_kbps=400, gop=15)
    with SimServer([spec], port=0) as server:
        yield server


def test_simulator_packet_corruption_degrades_the_camera(sim: SimServer) -> None:
    cfg = IngestConfig(url=sim.url("noisy"), key="noisy",
                       source=SourceOptions(open_timeout=5, stall_timeout=5, corrupt_degraded_per_min=10))
    worker = IngestWorker(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while worker.status().decoded < 15 and time.monotonic() < deadline:
            stop.wait(0.1)
        clean = worker.status()
        assert clean.decoded >= 15 and clean.corrupt_frames == 0, clean
        sim.corrupt("noisy", 0.05)
        deadline = time.monotonic() + 20
        while worker.status().degraded is None and time.monotonic() < deadline:
            stop.wait(0.1)
        st = worker.status()
        assert st.degraded is not None and st.degraded.startswith("corrupt stream: "), st
        assert st.corrupt_frames + st.rejected_packets > 10
    finally:
        sim.corrupt("noisy", 0.0)
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


# ---- the node ---------------------------------------------------------------------------------------


def test_node_reports_a_damaged_camera_degraded_with_its_corrupt_rate(
        clips: tuple[Path, Path], tmp_path: Path) -> None:
    from camfleet.config import load_config_text
    from camfleet.runtime import Node
    from tests.support.runtime_helpers import States

    damaged = clips[1]
    config = load_config_text(f"""
data_dir: {tmp_path / "data"}
pipelines:
  p: [motion: {{}}]
defaults: {{pipeline: p, detect: {{width: 320, height: 240, fps: 5}}}}
runtime: {{heartbeat_timeout: 5, startup_grace: 20, backoff_initial: 0.2, backoff_max: 2}}
api: {{enabled: false}}
cameras:
  broken:
    sources: [{{url: "{damaged}", roles: [detect], loop: true, realtime: true, corrupt_degraded_per_min: 10}}]
  """)
    node = Node(config)
    node.start()
    states = States(node)
    try:
        states.wait("broken", "degraded", timeout=60)  # "connecting" first, then the damage
        deadline = time.monotonic() + 60
        cam = node.status().cameras["broken"]
        while "corrupt stream" not in cam.reason and time.monotonic() < deadline:
            time.sleep(0.25)  # the supervisor refreshes the status 4 times a second; reasons are not events
            cam = node.status().cameras["broken"]
        assert cam.state == "degraded" and "corrupt stream" in cam.reason, cam
        assert cam.corrupt_fps > 0
        assert cam.processes["ingest"].metrics["corrupt"] > 0
    finally:
        states.close()
        node.stop()
