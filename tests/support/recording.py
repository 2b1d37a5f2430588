"""Encoded test video and a recorder feeder, shared by the recording tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from camfleet.framebus import Packet, PacketFlags
from camfleet.recording import Recorder
from camfleet.vocabulary import SegmentRecord

TB = Fraction(1, 90000)
FPS = 15
STEP = 6000  # 90 kHz ticks per frame
T0 = 1_700_000_000.0


def encode(codec: str, width: int, height: int, n: int, gop: int = 15, *,
           global_header: bool = True) -> tuple[list[Any], bytes]:
    enc = av.CodecContext.create(codec, "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
    enc.time_base, enc.framerate, enc.gop_size = TB, Fraction(FPS), gop
    enc.options = {"preset": "ultrafast", "tune": "zerolatency"} if codec == "libx264" else {
        "preset": "ultrafast", "x265-params": f"keyint={gop}:min-keyint={gop}:bframes=0:log-level=error"}
    if global_header:
        enc.flags |= av.codec.context.Flags.global_header
    packets: list[Any] = []
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(n):
        img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, 128)], -1).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i * STEP, TB
        packets += enc.encode(frame)
    packets += enc.encode(None)
    return packets, bytes(enc.extradata or b"")


def feed(rec: Recorder, packets: list[Any], extradata: bytes, *, codec: str = "h264", pts_offset: int = 0,
         wall_offset: float = 0.0, flag_at: int | None = None) -> None:
    for i, p in enumerate(packets):
        flags = PacketFlags.KEY if p.is_keyframe else PacketFlags.NONE
        if i == flag_at:
            flags |= PacketFlags.DISCONTINUITY
        pkt = Packet(seq=i + 1, data=bytes(p), pts=p.pts + pts_offset, dts=p.dts + pts_offset,
                     duration=0, flags=flags,
                     capture_ns=int((T0 + wall_offset + float(p.dts * TB)) * 1e9))
        rec.on_packet(pkt, (codec, extradata, (1, 90000)) if pkt.is_key else None)


def frames_of(root: Path, seg: SegmentRecord) -> tuple[int, int, int]:
    with av.open(str(root / seg.path)) as c:
        frames = list(c.decode(video=0))
        return len(frames), frames[0].width, frames[0].height


def write_clip(path: Path) -> Path:
    """A 1 s, 15 fps H.264 MP4 (64x64) at ``path``; returns ``path``."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=15)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        s.codec_context.options = {"preset": "ultrafast"}
        for i in range(15):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), i * 10, np.uint8), format="rgb24")
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path
