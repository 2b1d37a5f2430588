"""Cameras whose codec cannot go into MP4 as is: recorded by encoding the decoded frames to H.264.

MJPEG over HTTP, an MPEG-4 part 2 AVI and raw video (what a ``/dev/video``
camera gives) each produce playable H.264 segments at the frame ring's size;
with ``record.transcode: never`` such a camera's recorder is ``degraded``, with
the reason, instead of ``healthy``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from camfleet.config import RecordSettings, load_config_text
from camfleet.framebus import PixelFormat
from camfleet.ingest import IngestConfig, IngestWorker, OutputSpec, SourceOptions
from camfleet.recording import Recorder
from camfleet.recording.segment import SegmentInfo
from camfleet.recording.transcode import can_remux, choose_encoder, software_preset
from camfleet.runtime import Node

from .support import http_cameras as hc
from .support.runtime_helpers import States

pytestmark = [pytest.mark.process, pytest.mark.beside]

RING = (160, 120)
"""The frame ring's (detect) size: what a transcoded recording gets."""


def _file(path: Path, codec: str, pix_fmt: str, frames: int = 30, fps: int = 10) -> Path:
    """A short AVI of ``codec`` (a moving bar), 320x240."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, pix_fmt
        for i in range(frames):
            img = np.zeros((240, 320, 3), np.uint8)
            img[:, (i * 9) % 300:(i * 9) % 300 + 20] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    return path


@pytest.fixture
def mjpeg_url() -> Iterator[str]:
    with hc.mjpeg_server() as url:
        yield url


def _record(url: str, key: str, root: Path, segments: int, *, loop: bool = False) -> list[SegmentInfo]:
    """Ingest ``url`` in a thread and record it (transcode: auto) until ``segments`` are written."""
    source = SourceOptions(open_timeout=5, stall_timeout=5, loop=loop, realtime=True)
    cfg = IngestConfig(url=url, key=key, source=source, output=OutputSpec(PixelFormat.YUV420P, *RING, 10),
                       backoff_initial=0.2, backoff_max=0.5)
    done: list[SegmentInfo] = []
    enough = threading.Event()

    def on_segment(info: SegmentInfo) -> None:
        done.append(info)
        if len(done) >= segments:
            enough.set()

    recorder = Recorder(key, RecordSettings(enabled=True, segment_seconds=1.0), root, None,
                        on_segment=on_segment, fps=10)
    stop = threading.Event()
    threads = [threading.Thread(target=IngestWorker(cfg).run, args=(stop,), daemon=True),
               threading.Thread(target=recorder.run, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    try:
        assert enough.wait(30), (done, recorder.problem, recorder.stats)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert recorder.transcoding and recorder.problem is None
    return done


def _check_playable(infos: list[SegmentInfo]) -> None:
    for info in infos:
        assert info.path.suffix == ".mp4" and info.path.exists()
        with av.open(str(info.path)) as c:
            stream = c.streams.video[0]
            assert stream.codec_context.name == "h264"
            frames = list(c.decode(video=0))
        assert frames, info
        assert {(f.width, f.height) for f in frames} == {RING}  # the detect stream's size, said in the README
        assert frames[0].key_frame


def _planes(seed: int) -> list[np.ndarray]:
    """I420 planes of a RING-sized test picture."""
    w, h = RING
    y = ((np.arange(w * h).reshape(h, w) + seed) % 251).astype(np.uint8)
    return [y, np.full((h // 2, w // 2), 50 + seed, np.uint8), np.full((h // 2, w // 2), 200, np.uint8)]


def test_ring_frames_with_padded_rows_are_copied_exactly(shm_dir: Path) -> None:
    from camfleet import framebus
    from camfleet.framebus import FrameFormat, FramePublisher
    from camfleet.recording.transcode import video_frame

    with FramePublisher("padded", FrameFormat(*RING, "yuv420p"), slots=4) as pub:
        assert not pub.format.packed  # rows padded to an alignment: the primary view is flat
        with framebus.subscribe("padded", mode="sequential", connect_timeout=5) as sub:
            pub.publish(_planes(3))
            with sub.next(5) as frame:
                image = video_frame(frame)
    got = image.to_ndarray()
    w, h = RING
    y, u, v = _planes(3)
    assert got.shape == (h * 3 // 2, w)
    assert (got[:h] == y).all()
    assert (got[h:].reshape(-1)[: u.size] == u.reshape(-1)).all()
    assert (got[h:].reshape(-1)[u.size:] == v.reshape(-1)).all()


def test_codecs_remuxed_as_they_are() -> None:
    assert can_remux("h264") and can_remux("hevc")
    assert not any(can_remux(c) for c in ("mjpeg", "mpeg4", "rawvideo", "msmpeg4v3"))


def test_software_encoder_preset_is_sized_for_the_cpu() -> None:
    assert software_preset(2) == "ultrafast"
    assert software_preset(8) == "superfast"
    assert software_preset(32) == "veryfast"
    enc = choose_encoder()
    assert enc.hardware or (enc.name == "libx264" and enc.options["preset"] == software_preset())


def test_mjpeg_http_camera_is_recorded(mjpeg_url: str, tmp_path: Path, shm_dir: Path) -> None:
    _check_playable(_record(mjpeg_url, "mjpeg", tmp_path, 2))


@pytest.mark.parametrize(("codec", "pix_fmt"), [("mpeg4", "yuv420p"), ("rawvideo", "yuyv422")],
                         ids=["mpeg4-avi", "raw-video"])
def test_avi_file_is_recorded(codec: str, pix_fmt: str, tmp_path: Path, shm_dir: Path) -> None:
    clip = _file(tmp_path / f"{codec}.avi", codec, pix_fmt)
    with av.open(str(clip)) as c:  # the file is what it says: not something the recorder could remux
        assert c.streams.video[0].codec_context.name == codec
    _check_playable(_record(str(clip), codec, tmp_path / "rec", 2, loop=True))


@pytest.mark.parametrize("transcode", ["never", "auto"])
def test_node_reports_an_unrecordable_camera_degraded(transcode: str, mjpeg_url: str, tmp_path: Path,
                                                      shm_dir: Path) -> None:
    config = load_config_text(f"""
data_dir: {tmp_path}
pipelines:
  p: [{{motion: {{}}}}]
defaults: {{pipeline: p, detect: {{width: {RING[0]}, height: {RING[1]}, fps: 10}}}}
runtime: {{heartbeat_timeout: 3, startup_grace: 20}}
cameras:
  usb:
    sources: [{{url: "{mjpeg_url}", roles: [detect]}}]
    record: {{enabled: true, segment_seconds: 1, transcode: {transcode}}}
""")
    node = Node(config)
    states = States(node)
    node.start()
    try:
        if transcode == "never":
            states.wait("usb", "degraded", 30)
            rec = node.status().cameras["usb"].processes["recorder"]
            assert rec.state == "degraded" and "cannot be remuxed" in rec.reason, rec
            assert "mjpeg" in node.status().cameras["usb"].reason
        else:
            states.wait("usb", "healthy", 30)
            deadline = time.monotonic() + 30
            while not list(config.recordings_path.rglob("*.mp4")):
                assert time.monotonic() < deadline, node.status().cameras["usb"]
                time.sleep(0.2)  # the recorder process writes the files: nothing to wait on
            assert node.status().cameras["usb"].processes["recorder"].state == "healthy"
    finally:
        node.stop()
    assert list(shm_dir.iterdir()) == []


def test_no_encoder_is_a_problem_not_a_busy_loop(tmp_path: Path, shm_dir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from camfleet.framebus import FrameFormat, FramePublisher
    from camfleet.recording import transcode

    def broken(*_: object, **__: object) -> None:
        raise av.error.EncoderNotFoundError(0, "no such encoder")  # type: ignore[no-untyped-call]

    monkeypatch.setattr(transcode, "FrameEncoder", broken)
    recorder = Recorder("nocodec", RecordSettings(enabled=True, transcode="always"), tmp_path, None, fps=10)
    stop = threading.Event()
    with FramePublisher("nocodec", FrameFormat(*RING, "yuv420p"), slots=4) as pub:
        thread = threading.Thread(target=recorder.run, args=(stop,), daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while recorder.problem is None:
                assert time.monotonic() < deadline, recorder.stats
                pub.publish(_planes(0))
                time.sleep(0.1)  # the recorder runs in its own thread: nothing to wait on
        finally:
            stop.set()
            thread.join(10)
    assert "cannot open an H.264 encoder" in (recorder.problem or "")
    assert not thread.is_alive()
