"""Ingest from HTTP (MJPEG, HLS), files and bad sources, with real servers on loopback."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from camfleet import framebus as fb
from camfleet.ingest import ErrorKind, IngestConfig, IngestError, IngestState, IngestWorker, SourceOptions
from camfleet.ingest.source import open_source

from .support import http_cameras as hc

pytestmark = [pytest.mark.process, pytest.mark.beside]


def make_clip(path: Path, frames: int = 30, size: tuple[int, int] = (320, 240)) -> Path:
    out = av.open(str(path), "w")
    stream = out.add_stream("libx264", rate=15, options={"g": "15"})
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    for i in range(frames):
        img = np.full((size[1], size[0], 3), (i * 8) % 255, np.uint8)
        for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    for p in stream.encode():
        out.mux(p)
    out.close()
    return path


class Run:
    def __init__(self, cfg: IngestConfig) -> None:
        self.states: list[tuple[IngestState, IngestError | None]] = []
        self.cond = threading.Condition()
        self.worker = IngestWorker(cfg, on_state=self._on_state)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def _on_state(self, state: IngestState, err: IngestError | None) -> None:
        with self.cond:
            self.states.append((state, err))
            self.cond.notify_all()

    def wait_state(self, state: IngestState, timeout: float) -> IngestError | None:
        with self.cond:
            assert self.cond.wait_for(lambda: any(s == state for s, _ in self.states), timeout), self.states
            return next(e for s, e in reversed(self.states) if s == state)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def run() -> Iterator[list[Run]]:
    runs: list[Run] = []
    yield runs
    for r in runs:
        r.close()


def start(runs: list[Run], url: str, key: str, **source: object) -> Run:
    opts = SourceOptions(**{"open_timeout": 5.0, "stall_timeout": 5.0, **source})  # type: ignore[arg-type]
    r = Run(IngestConfig(url=url, key=key, source=opts, backoff_initial=0.2, backoff_max=0.5))
    runs.append(r)
    return r


def take(key: str, n: int, **kw: object) -> list[tuple[int, fb.FrameFlags, tuple[int, ...]]]:
    out: list[tuple[int, fb.FrameFlags, tuple[int, ...]]] = []
    with fb.subscribe(key, connect_timeout=10, **kw) as sub:  # type: ignore[arg-type]
        while len(out) < n:
            try:
                with sub.next(10) as f:
                    out.append((f.seq, f.flags, f.array.shape))
            except fb.Overrun:
                continue  # a slow reader on a loaded machine: the next call resumes
    return out


def test_mjpeg_over_http(run: list[Run]) -> None:
    with hc.mjpeg_server() as url:
        r = start(run, url, "mjpeg")
        r.wait_state(IngestState.STREAMING, 15)
        frames = take("mjpeg", 10, mode="sequential")
        assert {shape for _, _, shape in frames} == {(360, 320)}  # 320x240 yuv420p as (H*3/2, W)
        with fb.subscribe_packets("mjpeg", connect_timeout=5) as packets:
            assert packets.codec == "mjpeg" and packets.next(5).is_key


def test_hls_over_http(run: list[Run], tmp_path: Path) -> None:
    hc.write_hls(tmp_path, seconds=4)
    with hc.file_server(tmp_path) as base:
        r = start(run, base + "/index.m3u8", "hls", realtime=True)
        r.wait_state(IngestState.STREAMING, 15)
        assert len(take("hls", 10, mode="sequential")) == 10


def test_file_without_loop_ends_with_every_frame(run: list[Run], tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "a.mp4", frames=30)
    r = start(run, str(clip), "file-once")
    r.wait_state(IngestState.ENDED, 20)  # a file without loop ends: ENDED, not STOPPED
    assert r.worker.status().frames == 30
    assert r.worker.status().packets == 30


def test_looping_file_flags_discontinuity_at_each_restart(run: list[Run], tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "loop.mp4", frames=20)
    r = start(run, str(clip), "file-loop", loop=True, realtime=True)
    r.wait_state(IngestState.STREAMING, 15)
    frames = take("file-loop", 45, mode="sequential")
    discont = [seq for seq, flags, _ in frames if flags & fb.FrameFlags.DISCONTINUITY]
    assert len(discont) >= 1
    # one discontinuity per pass of the 20-frame clip (a reader overrun may skip one)
    assert all((b - a) % 20 == 0 for a, b in itertools.pairwise(discont))
    assert all(flags & fb.FrameFlags.KEY for seq, flags, _ in frames if seq in discont)


def test_garbage_file_is_classified_and_the_loop_survives(run: list[Run], tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 400)
    r = start(run, str(junk), "junk")
    err = r.wait_state(IngestState.BACKOFF, 10)
    assert err is not None and err.kind == ErrorKind.CORRUPT
    with r.cond:
        assert r.cond.wait_for(lambda: sum(s == IngestState.CONNECTING for s, _ in r.states) >= 2, 10)
    assert r.thread.is_alive() and r.worker.status().frames == 0


def test_missing_file_and_unknown_scheme(run: list[Run]) -> None:
    with pytest.raises(IngestError, match="no such file"):
        open_source("/no/such/clip.mp4", SourceOptions())
    with pytest.raises(ValueError, match="unsupported camera URL"):
        IngestWorker(IngestConfig(url="gopher://x/y", key="bad"))


def test_silent_server_is_a_timeout_not_corrupt_data() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(srv.accept()[0]), daemon=True).start()
    try:
        t0 = time.monotonic()
        with pytest.raises(IngestError) as err:
            opts = SourceOptions(open_timeout=1.5, stall_timeout=1.5)
            open_source(f"rtsp://user:pw@127.0.0.1:{port}/x", opts)
        assert err.value.kind == ErrorKind.TIMEOUT
        assert time.monotonic() - t0 < 5
        assert "pw" not in str(err.value).replace("***", "")
    finally:
        srv.close()
        for s in held:
            s.close()


def test_unavailable_hardware_decoder_falls_back_to_software(
    run: list[Run], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="camfleet.ingest")
    clip = make_clip(tmp_path / "hw.mp4", frames=15)
    r = start(run, str(clip), "hw", hwaccel="cuda")
    r.wait_state(IngestState.ENDED, 20)  # a file without loop ends: ENDED, not STOPPED
    assert r.worker.status().frames == 15
    assert "hardware decoding with cuda unavailable" in caplog.text
    assert "decoding in software" in caplog.text
