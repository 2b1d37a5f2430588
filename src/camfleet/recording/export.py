"""Clip export: the segments overlapping a time range concatenated into one MP4 by remux.

The clip starts at the last keyframe at or before ``start`` (a decoder needs
it) and ends with the last packet before ``end``; nothing is decoded or
re-encoded. Timestamps follow wall-clock time, so a hole in the recording
shows as a held frame, and :attr:`ClipInfo.missing` says how long it was.
The output is written next to ``out_path`` as a temporary file, fsynced and
renamed.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import tempfile
from collections.abc import Generator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from .bitstream import parameter_sets
from .paths import UnsafePath, atomic_replace, safe_join

if TYPE_CHECKING:
    from camfleet.store import SegmentRecord, Store

log = logging.getLogger("camfleet.recording")


class ExportError(ValueError):
    """A clip cannot be made: unknown camera or event, no footage in the range, bad range."""


@dataclass(frozen=True)
class ClipInfo:
    """An exported clip: ``start``/``end`` it covers (epoch s), frames, keyframes, size (bytes).

    ``segments`` is how many segment files it was cut from; ``missing`` the
    seconds of the covered span that had no footage.
    """

    path: Path
    start: float
    end: float
    frames: int
    keyframes: int
    size: int
    segments: int
    missing: float


@dataclass
class _Timed:
    packet: Any
    wall: float
    key: bool


def _segment_packets(
    recordings_dir: Path, seg: SegmentRecord
) -> Generator[tuple[Any, Any, float], None, None]:
    """(stream, packet, wall-clock time in epoch s) of every packet of one segment file."""
    try:
        path = safe_join(recordings_dir, seg.path)
    except UnsafePath as exc:
        raise ExportError(f"segment row {seg.id}: {exc}") from None
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        log.warning("export: skipping unreadable segment %s (%s)", seg.path, exc)
        return
    with container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        first: int | None = None
        with contextlib.suppress(av.FFmpegError):
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                ts = packet.dts if packet.dts is not None else packet.pts
                if first is None:
                    first = ts
                yield stream, packet, seg.start + float((ts - first) * tb)


def _fmt(stream: Any) -> tuple[str, int, int, tuple[bytes, ...]]:
    ctx = stream.codec_context
    name = str(ctx.name)
    return name, int(ctx.width), int(ctx.height), parameter_sets(name, bytes(ctx.extradata or b""))


class _ClipWriter:
    """Muxes selected packets into the clip with wall-clock based timestamps (1/90000 s)."""

    TB = Fraction(1, 90000)

    def __init__(self, out: Any) -> None:
        self.out = out
        self.stream: Any = None
        self.fmt: tuple[str, int, int, tuple[bytes, ...]] | None = None
        self.t0 = 0.0
        self.last_dts = -1
        self.first_wall: float | None = None
        self.last_wall = 0.0
        self.step = 0.0
        self.frames = self.keyframes = 0

    def accepts(self, stream: Any) -> bool:
        """Prepare for packets of ``stream`` (an open input stream); False if its format differs."""
        fmt = _fmt(stream)
        if self.stream is None:
            self.stream = self.out.add_stream_from_template(stream)
            self.stream.time_base = self.TB
            self.fmt = fmt
            return True
        return fmt == self.fmt

    def mux(self, time_base: Fraction, packet: Any, wall: float) -> None:
        """Write one packet (timestamps in ``time_base``) taken at ``wall`` (epoch s)."""
        if self.first_wall is None:
            self.first_wall = self.t0 = wall
        elif wall > self.last_wall:
            self.step = wall - self.last_wall
        dts = max(round((wall - self.t0) / self.TB), self.last_dts + 1)
        reorder = 0 if packet.dts is None else round((packet.pts - packet.dts) * time_base / self.TB)
        packet.stream = self.stream
        packet.dts, packet.pts, packet.time_base = dts, dts + reorder, self.TB
        self.out.mux(packet)
        self.last_dts = dts
        self.last_wall = wall
        self.frames += 1
        self.keyframes += int(packet.is_keyframe)


def export_clip(
    store: Store, recordings_dir: Path, camera: str, start: float, end: float, out_path: Path
) -> ClipInfo:
    """Write the footage of ``camera`` covering ``[start, end]`` (epoch s) to ``out_path`` (MP4).

    Raises :class:`ExportError` for an unknown camera, an empty range or no footage.
    """
    if not end > start:
        raise ExportError(f"the clip's end ({end}) must be after its start ({start})")
    segs = store.query_segments(camera=camera, start=start, end=end)
    if not segs:
        if camera not in store.segment_totals():
            raise ExportError(f"unknown camera {camera!r}: it has no recordings")
        raise ExportError(f"camera {camera!r} has no footage between {start:.3f} and {end:.3f}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".part", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            clip = _ClipWriter(out)
            used = _select(recordings_dir, segs, start, end, clip)
            if clip.first_wall is None:
                raise ExportError(f"camera {camera!r}: no playable footage between {start:.3f} and {end:.3f}")
        atomic_replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    assert clip.first_wall is not None
    clip_end = clip.last_wall + clip.step
    slack = 1.5 * clip.step  # less than a frame and a half is timestamp jitter, not a hole

    def hole(seconds: float) -> float:
        return seconds if seconds > slack else 0.0

    missing = hole(clip.first_wall - start) + hole(end - clip_end)
    covered = [(max(s.start, start), min(s.end, end)) for s in segs]
    for (_, a_end), (b_start, _) in itertools.pairwise(covered):
        missing += hole(b_start - a_end)
    return ClipInfo(out_path, clip.first_wall, clip_end, clip.frames, clip.keyframes,
                    out_path.stat().st_size, used, round(missing, 3))


def _select(
    recordings_dir: Path, segs: list[SegmentRecord], start: float, end: float, clip: _ClipWriter
) -> int:
    """Feed ``clip`` the packets from the last keyframe at/before ``start`` to before ``end``."""
    gop: list[tuple[Fraction, Any, float]] = []  # before ``start``: packets from the last keyframe
    started = False
    used = 0
    for seg in segs:
        opened = False
        packets = _segment_packets(recordings_dir, seg)
        for stream, packet, wall in packets:
            if not opened:
                opened = True
                if not clip.accepts(stream):
                    log.warning("export: the stream format changes at %.3f; the clip ends there", wall)
                    end = wall
                    break
                used += 1
            if wall >= end:
                break
            item = (stream.time_base, packet, wall)
            if started:
                clip.mux(*item)
            elif wall <= start:
                if packet.is_keyframe:
                    gop = [item]
                elif gop:
                    gop.append(item)
            elif gop or packet.is_keyframe:
                started = True
                for earlier in gop:
                    clip.mux(*earlier)
                clip.mux(*item)
                gop = []
        packets.close()  # closes the segment file even when the loop stopped early
        if seg.end >= end:
            break
    if not started:  # the footage ends before ``start`` is passed: its last GOP covers ``start``
        for earlier in gop:
            clip.mux(*earlier)
    return used



def event_clip(
    store: Store, recordings_dir: Path, event_id: str, out_path: Path, pre: float = 5.0, post: float = 5.0
) -> ClipInfo:
    """Export an event's footage from ``pre`` seconds before it to ``post`` seconds after it.

    A running event (no end yet) is exported up to the newest footage.
    Raises :class:`ExportError` for an unknown event or when there is no footage.
    """
    if pre < 0 or post < 0:
        raise ExportError(f"pre ({pre}) and post ({post}) must be seconds >= 0")
    event = store.get_event(event_id)
    if event is None:
        raise ExportError(f"unknown event {event_id!r}")
    end = event.end
    if end is None:
        segs = store.query_segments(camera=event.camera, start=event.start)
        end = max((s.end for s in segs), default=event.start)
    return export_clip(store, recordings_dir, event.camera, event.start - pre, end + post, out_path)
