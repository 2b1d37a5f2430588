"""The simulator's replay mode: each camera encoded once into a cached clip, replayed by the RTSP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import av.logging
import numpy as np
import pytest

from camfleet.ingest.scene import Scene
from camfleet_testing.sim import CameraSpec, SimError, SimServer
from camfleet_testing.sim.clips import clip_frames, ensure_clips

pytestmark = [pytest.mark.process, pytest.mark.beside]

# 2 s clips (30 frames, two GOPs) in which the objects show for the first second only (seed 0: phase 0).
SMALL: dict[str, Any] = {"width": 320, "height": 180, "fps": 15.0, "bitrate_kbps": 300, "gop": 15,
                         "objects": ("person", "cat"), "active": 0.5, "active_period_s": 2.0}
OPTIONS = {"rtsp_transport": "tcp", "timeout": "3000000", "analyzeduration": "100000", "probesize": "32768"}


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def sim(clip_dir: Path) -> Iterator[SimServer]:
    specs = [CameraSpec(name="loop", seed=0, **SMALL), CameraSpec(name="stall", seed=0, **SMALL)]
    with SimServer(specs, mode="replay", clip_dir=clip_dir) as server:
        yield server


class Reader(threading.Thread):
    """Decode a stream in the background: every frame's luma, stream time and decoder errors."""

    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.url, self.timeout_s = url, timeout_s
        self.cond = threading.Condition()
        self.frames: list[tuple[float | None, np.ndarray[Any, Any]]] = []
        self.errors: list[str] = []
        self.error: BaseException | None = None
        self.done = False
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            with av.logging.Capture() as logs, av.open(self.url, options=OPTIONS,
                                                       timeout=(self.timeout_s + 2, self.timeout_s + 2)) as c:
                for packet in c.demux(video=0):
                    if self._halt.is_set():
                        break
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError as exc:
                        self.errors.append(str(exc))
                        continue
                    with self.cond:
                        self.frames += [(f.time, f.to_ndarray(format="yuv420p")[: f.height]) for f in frames]
                        self.cond.notify_all()
            # FFmpeg's decoder reports concealed damage through its log, not as an exception.
            self.errors += [f"{name}: {msg}" for level, name, msg in logs
                            if level <= av.logging.ERROR and name and name.startswith("h264")]
        except BaseException as exc:
            self.error = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def wait_count(self, n: int, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.frames) >= n or self.done, timeout) and len(
                self.frames) >= n

    def close(self) -> None:
        self._halt.set()
        self.join(self.timeout_s + 5)
        assert not self.is_alive()


def test_replayed_camera_loops_at_its_rate_with_its_activity_schedule(sim: SimServer) -> None:
    reader = Reader(sim.url("loop"))
    reader.start()
    try:
        assert reader.wait_count(75, 15), (len(reader.frames), reader.error)  # 5 s: two loops and more
    finally:
        reader.close()
    assert reader.error is None and not reader.errors, (reader.error, reader.errors[:3])
    stats = sim.server_stats("loop")
    assert stats["mode"] == "replay" and stats["loops"] >= 2 and stats["clip_frames"] == 30
    times = [t for t, _ in reader.frames[1:75] if t is not None]  # RTSP's first frame may have no time
    steps = np.diff(times)
    assert len(times) >= 70 and (steps > 0).all()  # continuous, increasing across the loop boundaries
    # The stream's own clock: the server pushed one access unit per 1/15 s (first ones may come in a burst).
    assert 0.8 / 15 < float(np.mean(steps[20:])) < 1.25 / 15, steps
    # The schedule shows: frames of the still, empty half-period equal the scene's background, the others
    # show the objects; about half and half, as active=0.5 asks.
    background = Scene(320, 180, seed=0, objects=("person", "cat")).background_i420()[:180].astype(np.int16)
    diffs = [float(np.abs(y.astype(np.int16) - background).mean()) for _, y in reader.frames[:75]]
    still = sum(d < 1.5 for d in diffs)
    busy = sum(d > 4.0 for d in diffs)
    # nothing in between: compression noise is small
    assert still + busy == len(diffs), [round(d, 1) for d in sorted(diffs)]
    assert 0.3 < still / len(diffs) < 0.7, (still, busy)


def test_stall_and_resume_restart_at_a_keyframe_and_resize_is_refused(sim: SimServer) -> None:
    reader = Reader(sim.url("stall"), timeout_s=8.0)
    reader.start()
    try:
        assert reader.wait_count(5, 10), reader.error
        sim.stall("stall")
        pushed = sim.frames_sent("stall")
        seen = len(reader.frames)
        time.sleep(0.7)  # nothing to wait on: the point is that nothing comes
        assert sim.frames_sent("stall") == pushed and len(reader.frames) <= seen + 1
        sim.resume("stall")  # mid-GOP by now: the server goes back to the GOP's keyframe
        assert reader.wait_count(seen + 20, 10), reader.error
    finally:
        reader.close()
    assert reader.error is None and not reader.errors, (reader.error, reader.errors[:3])
    with pytest.raises(SimError, match="live"):
        sim.resize("stall", 160, 90)


def test_clips_are_cached_by_content_and_a_damaged_one_is_encoded_again(sim: SimServer, clip_dir: Path
                                                                        ) -> None:
    specs = [CameraSpec(name="a", seed=0, **SMALL), CameraSpec(name="b", seed=0, **SMALL)]
    paths = ensure_clips(specs, clip_dir)  # the same content as the served cameras: already there
    assert paths["a"] == paths["b"] and len(list(clip_dir.glob("*.clip"))) == 1
    assert clip_frames(specs[0]) == 30
    path = paths["a"]
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a writer killed half-way would leave this, were it not atomic
    assert ensure_clips(specs[:1], clip_dir)["a"] == path
    assert path.read_bytes() == good  # encoded again, to the same bytes
    with pytest.raises(ValueError, match="h264"):
        SimServer([CameraSpec(name="x", codec="h265")], mode="replay")
