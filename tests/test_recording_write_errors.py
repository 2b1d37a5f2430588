"""The recorder keeps what it wrote when a write or finish fails (issue 12, item 9).

A failed write (EIO, ENOSPC) or a failed ``finish()`` leaves the ``.part``
file (fragmented MP4: every flushed GOP readable); the recorder finalises it
once a segment can be written again, :func:`recover_parts` keeps a ``.part``
it cannot copy now and quarantines one it cannot read, never deleting
footage. The disk-full case runs on a 2 MiB tmpfs (needs ``mount``: root).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from camfleet.config import RecordSettings
from camfleet.recording import Recorder, SegmentWriter, recover_parts, segment_relpath
from camfleet.recording import recover as recover_mod
from camfleet.recording import segment as segment_mod
from camfleet.recording.paths import start_from_name
from camfleet.vocabulary import OutboxMessage, SegmentMessage

from .support.recording import FPS, STEP, T0, TB, encode, feed

pytestmark = pytest.mark.unit


class Sink:
    """Collects the recorder's segment messages."""

    def __init__(self) -> None:
        self.segments: list[Any] = []

    def put(self, item: OutboxMessage) -> None:
        assert isinstance(item, SegmentMessage)
        self.segments.append(item.segment)


def _packets(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for p in c.demux(video=0) if p.size)


@pytest.fixture(scope="module")
def video() -> tuple[list[Any], bytes]:
    """8 s of 160x90 H.264, a keyframe each second."""
    return encode("libx264", 160, 90, 8 * FPS)


def test_a_failed_write_keeps_the_segment_and_finalises_it_later(
        tmp_path: Path, video: tuple[list[Any], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    packets, extra = video
    calls = {"n": 0}
    real_write = SegmentWriter.write

    def failing(self: SegmentWriter, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 40:  # frame 39: 9 frames into the second segment (frames 30..59)
            raise OSError(errno.EIO, "Input/output error")
        real_write(self, *args, **kwargs)

    monkeypatch.setattr(SegmentWriter, "write", failing)
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=2), tmp_path, sink)
    feed(rec, packets, extra)
    rec.finish_segment()
    assert rec.stats.errors == 1
    starts = {round(s.start - T0, 3): s for s in sink.segments}
    assert 2.0 in starts, f"the failed segment's frames are gone: {sorted(starts)}"
    failed = starts[2.0]
    assert failed.frames == 9 and _packets(tmp_path / failed.path) == 9
    assert not list(tmp_path.rglob("*.part")) and rec.leftovers == []
    # every frame is in a segment except those between the failure and the next keyframe (39..44)
    assert sum(s.frames for s in sink.segments) == len(packets) - 6


def test_a_failed_finish_keeps_the_whole_segment(
        tmp_path: Path, video: tuple[list[Any], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    packets, extra = video
    real = segment_mod.atomic_replace
    calls = {"n": 0}

    def fsync_fails_once(tmp: Path, final: Path) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.EIO, "fsync: Input/output error")
        real(tmp, final)

    monkeypatch.setattr(segment_mod, "atomic_replace", fsync_fails_once)
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=2), tmp_path, sink)
    feed(rec, packets, extra)
    rec.finish_segment()
    assert rec.stats.errors == 1
    assert sorted(round(s.start - T0, 3) for s in sink.segments) == [0.0, 2.0, 4.0, 6.0]
    assert sum(s.frames for s in sink.segments) == len(packets)  # not one frame lost
    assert not list(tmp_path.rglob("*.part"))


def test_recover_parts_never_deletes_footage(
        tmp_path: Path, video: tuple[list[Any], bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    packets, extra = video
    cam = tmp_path / "cam"
    # a real .part of 30 frames, left as by a failed finish
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=100), tmp_path, sink)
    feed(rec, packets[:30], extra)
    writer = rec._writer
    assert writer is not None
    good = writer.abandon()
    rec._writer = None
    assert good is not None and good.exists()
    garbage = tmp_path / (segment_relpath("cam", T0 + 100) + ".part")
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(os.urandom(20_000))
    odd = garbage.with_name("copy of a segment.mp4.part")
    odd.write_bytes(b"someone's bytes")
    empty = tmp_path / (segment_relpath("cam", T0 + 200) + ".part")
    empty.parent.mkdir(parents=True, exist_ok=True)
    empty.write_bytes(b"")

    def no_space(tmp: Path, final: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    # the copy into the final .mp4 fails for want of space: every .part stays as it was
    before = {p: p.read_bytes() for p in (good, garbage, odd)}
    monkeypatch.setattr(recover_mod, "atomic_replace", no_space)
    report = recover_parts(cam)
    assert good in report.kept and good.read_bytes() == before[good]
    assert report.removed == [empty]  # zero bytes: nothing to keep
    assert not list(cam.rglob("*.salvage"))
    quarantined = {p.name: p.read_bytes() for p in report.quarantined}  # unreadable: moved, not deleted
    assert quarantined == {garbage.name: before[garbage], odd.name: before[odd]}
    assert all(".quarantine" in p.parts for p in report.quarantined)
    monkeypatch.undo()

    report = recover_parts(cam)  # space again: the kept .part is finalised
    assert [round(i.start - T0, 3) for i in report.finalised] == [0.0]
    assert report.finalised[0].frames == 30 and not good.exists()
    assert not list(cam.rglob("*.part"))


# --------------------------------------------------------------------------- a disk that fills up


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted at ``tmp_path/disk`` (skips where mounting is not permitted)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small filesystem to fill")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mounting a 2 MiB tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _noise(n: int) -> tuple[list[Any], bytes]:
    """``n`` frames of 256x144 noise (hardly compressible: ~40 KB a frame), a keyframe a second."""
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 256, 144, "yuv420p"
    enc.time_base, enc.framerate, enc.gop_size = TB, Fraction(FPS), FPS
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "10"}
    enc.flags |= av.codec.context.Flags.global_header
    rng = np.random.default_rng(1)
    out: list[Any] = []
    for i in range(n):
        img = rng.integers(0, 256, (144, 256, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i * STEP, TB
        out += enc.encode(frame)
    out += enc.encode(None)
    return out, bytes(enc.extradata or b"")


def test_a_full_disk_loses_nothing_that_was_written(small_disk: Path) -> None:
    packets, extra = _noise(6 * FPS)
    assert sum(p.size for p in packets) > 3 * 2**20  # more than the disk holds
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=3), small_disk, sink)
    feed(rec, packets, extra)
    rec.finish_segment()
    assert rec.stats.errors >= 1, "the disk never filled up"
    parts = sorted(small_disk.rglob("*.part"))
    assert parts, "the segment being written when the disk filled up is gone"
    readable = {p: _packets(p) for p in parts}
    assert any(readable.values()), readable
    assert set(rec.leftovers) == set(parts)
    # retention frees space (the oldest segment goes), then the recorder finalises the leftovers
    oldest = min(sink.segments, key=lambda s: s.start)
    (small_disk / oldest.path).unlink()
    rec.retry_leftovers()
    assert rec.leftovers == [] and not list(small_disk.rglob("*.part"))
    recovered = {start_from_name(p) for p in parts}
    finalised = {s.start: s for s in sink.segments if s.start in recovered}
    assert {start_from_name(p): n for p, n in readable.items() if n} == \
        {start: s.frames for start, s in finalised.items()}
    quarantined = [q for q in (small_disk / ".quarantine").rglob("*") if q.is_file()]
    assert len(finalised) + len(quarantined) == len(parts)  # each .part finalised or kept aside
