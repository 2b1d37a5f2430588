"""Recorder logic on encoded packets (no ring, no server): cuts, gaps, format changes, bitstreams, paths."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from camfleet.config import RecordSettings
from camfleet.framebus import Packet, PacketFlags
from camfleet.recording import Recorder, UnsafePath, safe_join, segment_relpath
from camfleet.recording.bitstream import stream_info
from camfleet.recording.paths import start_from_name
from camfleet.vocabulary import SegmentMessage, SegmentRecord

from .support.recording import FPS, STEP, T0, encode, feed, frames_of

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def h264() -> tuple[list[Any], bytes]:
    return encode("libx264", 320, 180, 120)


class Sink:
    def __init__(self) -> None:
        self.messages: list[SegmentMessage] = []

    def put(self, item: SegmentMessage) -> None:
        self.messages.append(item)

    @property
    def segments(self) -> list[SegmentRecord]:
        return [m.segment for m in self.messages]


def test_cuts_at_keyframes_contiguous_and_finished_on_stop(
    tmp_path: Path, h264: tuple[list[Any], bytes]
) -> None:
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=2), tmp_path, sink)
    feed(rec, h264[0][:100], h264[1])  # 6.67 s
    rec.finish_segment()
    segs = sink.segments
    assert [s.frames for s in segs] == [30, 30, 30, 10]
    assert [s.keyframes for s in segs] == [2, 2, 2, 1]
    assert segs[0].start == pytest.approx(T0)
    for a, b in itertools.pairwise(segs):
        assert b.start == pytest.approx(a.end, abs=1e-6)
    assert segs[-1].end == pytest.approx(T0 + 100 / FPS)
    for s in segs:
        assert frames_of(tmp_path, s) == (s.frames, 320, 180)
        assert s.path == segment_relpath("cam", s.start)
        assert s.size == (tmp_path / s.path).stat().st_size
    assert not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("kind", ["pts jump", "drift", "discontinuity"])
def test_a_gap_closes_the_segment_and_the_next_starts_at_a_keyframe(
    tmp_path: Path, h264: tuple[list[Any], bytes], kind: str
) -> None:
    packets, extra = h264
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=10), tmp_path, sink, max_gap=2.0)
    feed(rec, packets[:37], extra)
    rest = packets[37:80]  # frame 37 is not a keyframe: frames 37..44 are dropped
    if kind == "pts jump":
        feed(rec, rest, extra, pts_offset=90000 * 20, wall_offset=20)
    elif kind == "drift":  # a stall the timestamps do not show
        feed(rec, rest, extra, wall_offset=8)
    else:
        feed(rec, rest, extra, flag_at=0)
    rec.finish_segment()
    first, second = sink.segments
    assert first.frames == 37 and first.end == pytest.approx(T0 + 37 / FPS)
    assert second.frames == 80 - 45
    shift = {"pts jump": 20, "drift": 8, "discontinuity": 0}[kind]
    assert second.start == pytest.approx(T0 + 45 / FPS + shift, abs=1e-3)
    for s in (first, second):
        assert frames_of(tmp_path, s)[0] == s.frames
        assert (s.end - s.start) * FPS == pytest.approx(s.frames, abs=0.01)  # no time warp


def test_format_change_starts_a_new_segment_with_the_new_size(
    tmp_path: Path, h264: tuple[list[Any], bytes]
) -> None:
    small = h264
    large = encode("libx264", 480, 270, 30)
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=10), tmp_path, sink)
    feed(rec, small[0][:30], small[1])
    feed(rec, large[0], large[1], pts_offset=30 * STEP, wall_offset=2.0)
    rec.finish_segment()
    a, b = sink.segments
    assert frames_of(tmp_path, a) == (30, 320, 180)
    assert frames_of(tmp_path, b) == (30, 480, 270)
    assert rec.stats.gaps == 1


def test_length_prefixed_packets_from_an_mp4_source(tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    with av.open(str(src), "w") as out:  # an MP4 source: avcC extradata, length-prefixed packets
        s = out.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 322, 182, "yuv420p"  # odd size: the SPS carries cropping
        s.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(30):
            img = np.full((182, 322, 3), i * 8, np.uint8)
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(s.encode(None))
    with av.open(str(src)) as c:
        st = c.streams.video[0]
        avcc = bytes(st.codec_context.extradata or b"")
        demuxed = [p for p in c.demux(st) if p.size]
        tb = st.time_base
        assert tb is not None
    assert avcc and avcc[0] == 1
    info = stream_info("h264", avcc, bytes(demuxed[0]))
    assert (info.width, info.height, info.nal_length_size) == (322, 182, 4)
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=10), tmp_path / "rec", sink)
    for i, p in enumerate(demuxed):
        pkt = Packet(seq=i + 1, data=bytes(p), pts=p.pts, dts=p.dts, duration=0,
                     flags=PacketFlags.KEY if p.is_keyframe else PacketFlags.NONE,
                     capture_ns=int((T0 + float(p.dts * tb)) * 1e9))
        rec.on_packet(pkt, ("h264", avcc, (tb.numerator, tb.denominator))
                      if pkt.is_key else None)
    rec.finish_segment()
    (seg,) = sink.segments
    assert frames_of(tmp_path / "rec", seg) == (len(demuxed), 322, 182)


def test_hevc_is_recorded(tmp_path: Path) -> None:
    packets, extra = encode("libx265", 330, 186, 30)
    info = stream_info("hevc", extra, bytes(packets[0]))
    assert (info.width, info.height) == (330, 186)
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=10), tmp_path, sink)
    feed(rec, packets, extra, codec="hevc")
    rec.finish_segment()
    (seg,) = sink.segments
    assert frames_of(tmp_path, seg) == (30, 330, 186)


def test_in_band_parameter_sets_without_extradata(tmp_path: Path) -> None:
    packets, extra = encode("libx264", 160, 90, 20, global_header=False)
    assert extra == b""
    sink = Sink()
    rec = Recorder("cam", RecordSettings(segment_seconds=10), tmp_path, sink)
    feed(rec, packets, extra)
    rec.finish_segment()
    assert frames_of(tmp_path, sink.segments[0]) == (20, 160, 90)


def test_unsupported_codec_is_reported_not_fatal(tmp_path: Path) -> None:
    sink = Sink()
    rec = Recorder("cam", RecordSettings(), tmp_path, sink)
    rec.on_packet(Packet(1, b"\xff\xd8", 0, 0, 0, PacketFlags.KEY, 0), ("mjpeg", b"", (1, 90000)))
    rec.finish_segment()
    assert sink.messages == [] and rec.stats.errors == 1


def test_paths_never_escape(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    root.mkdir()
    (tmp_path / "secret").write_text("x")
    os.symlink(tmp_path, root / "link")
    assert safe_join(root, "cam/2026-01-01/00/1.mp4") == (root / "cam/2026-01-01/00/1.mp4").resolve()
    for bad in ("../secret", "/etc/passwd", "cam/../../secret", "link/secret", "", "a\x00b"):
        with pytest.raises(UnsafePath):
            safe_join(root, bad)
    with pytest.raises(ValueError, match="invalid camera name"):
        segment_relpath("../x", T0)
    assert segment_relpath("cam", T0) == "cam/2023-11-14/22/1700000000000.mp4"
    assert start_from_name("cam/2023-11-14/22/1700000000123.mp4.part") == pytest.approx(T0 + 0.123)
