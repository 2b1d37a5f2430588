"""One MP4 segment being written: packets remuxed with PyAV, never decoded or re-encoded.

The file is written as ``<start-ms>.mp4.part`` (fragmented MP4, a fragment per
keyframe, flushed to the file at once, so even a killed writer leaves every
finished GOP readable), then
fsynced and renamed to ``.mp4`` by :meth:`SegmentWriter.finish`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container

from .bitstream import StreamInfo
from .paths import PART_SUFFIX, SEGMENT_SUFFIX, atomic_replace

log = logging.getLogger("camfleet.recording")

MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_OPTIONS = {"movflags": MOVFLAGS, "flush_packets": "1"}  # each finished fragment reaches the file


@dataclass(frozen=True)
class SegmentInfo:
    """A finished segment: ``path`` (final file), ``start``/``end`` (epoch seconds), ``size`` (bytes)."""

    path: Path
    start: float
    end: float
    size: int
    frames: int
    keyframes: int


class SegmentWriter:
    """Writes one segment file from encoded packets.

    ``path`` is the final ``.mp4`` path (the ``.part`` file next to it is
    written); ``start`` is the wall-clock time (epoch seconds) of the first
    packet; ``time_base`` is the packets' time base; ``origin`` is the
    timestamp (in ``time_base``) that becomes 0 in the file.
    """

    def __init__(self, path: Path, info: StreamInfo, time_base: Fraction, start: float, origin: int) -> None:
        if not path.name.endswith(SEGMENT_SUFFIX):
            raise ValueError(f"segment path {path} must end with {SEGMENT_SUFFIX}")
        self.path = path
        self.part = path.with_name(path.name[: -len(SEGMENT_SUFFIX)] + PART_SUFFIX)
        self.info = info
        self.time_base = time_base
        self.start = start
        self.origin = origin
        self.frames = 0
        self.keyframes = 0
        self.last_ts = origin
        self._out = self._create()
        try:
            self._stream: Any = self._out.add_mux_stream(info.codec, width=info.width, height=info.height)
            self._stream.time_base = time_base
        except BaseException:
            self.abort()
            raise

    def _create(self) -> av.container.OutputContainer:
        for attempt in (1, 2):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                return av.open(str(self.part), "w", format="mp4", options=_OPTIONS)
            except FileNotFoundError:
                if attempt == 2:  # retention pruned the empty directory in between: once more
                    raise
        raise AssertionError("unreachable")

    def write(self, data: bytes, pts: int, dts: int, duration: int, key: bool) -> None:
        """Mux one packet; timestamps are in the ring's time base (rebased to ``origin``)."""
        payload = self.info.to_annexb(data)
        if self.frames == 0 and self.info.extradata:
            payload = self.info.extradata + payload  # the muxer builds avcC/hvcC from these
        packet = av.Packet(payload)
        packet.pts = pts - self.origin
        packet.dts = dts - self.origin
        if duration > 0:
            packet.duration = duration
        packet.time_base = self.time_base
        packet.stream = self._stream
        packet.is_keyframe = key
        self._out.mux(packet)
        self.frames += 1
        self.keyframes += int(key)
        self.last_ts = max(self.last_ts, pts)

    def finish(self, end: float) -> SegmentInfo:
        """Close the file, fsync it and rename ``.part`` to ``.mp4``; ``end`` is epoch seconds."""
        self._out.close()
        atomic_replace(self.part, self.path)
        return SegmentInfo(self.path, self.start, end, self.path.stat().st_size, self.frames, self.keyframes)

    def abort(self) -> None:
        """Close and delete the ``.part`` file: only for a segment with no packet written."""
        with contextlib.suppress(Exception):
            self._out.close()
        self.part.unlink(missing_ok=True)

    def abandon(self) -> Path | None:
        """Give up on this segment after a failed write or finish, keeping what reached the file.

        Closes the file as far as it still can (flushing the last fragment
        when the disk allows) and returns the ``.part`` path, left in place
        for :func:`~camfleet.recording.recover.recover_part`; every GOP whose
        fragment was flushed stays readable. With no packet written the
        ``.part`` holds no footage and is deleted (returns None).
        """
        with contextlib.suppress(Exception):
            self._out.close()
        if self.frames == 0:
            self.part.unlink(missing_ok=True)
            return None
        return self.part if self.part.exists() else None
