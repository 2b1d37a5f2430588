"""Leftovers of a killed recorder: ``.part`` segments finalised when playable, else removed.

Segments are written as fragmented MP4, so a ``.part`` file left by a killed
process holds every GOP that was complete before the kill. :func:`recover_parts`
copies those packets (remux, no decode) into the final ``.mp4`` and reports
it; a ``.part`` with nothing readable is deleted. Nothing here ever references
a ``.part`` file from the store.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from .paths import PART_SUFFIX, SEGMENT_SUFFIX, atomic_replace, start_from_name
from .segment import SegmentInfo

log = logging.getLogger("camfleet.recording")

_SALVAGE_SUFFIX = ".salvage"


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover_parts` did: segments finalised and ``.part`` files removed."""

    finalised: list[SegmentInfo]
    removed: list[Path]


def _readable_packets(part: Path) -> tuple[list[Any], Any] | None:
    """The complete packets of a (possibly truncated) fragmented MP4, with its video stream."""
    size = part.stat().st_size
    try:
        container = av.open(str(part))
    except (av.FFmpegError, OSError, ValueError):
        return None
    packets: list[Any] = []
    try:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        with contextlib.suppress(av.FFmpegError, OSError, ValueError):
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
                    break  # the fragment being written when the process died
                packets.append(packet)
        while packets and not packets[0].is_keyframe:
            packets.pop(0)
        return (packets, stream) if packets else None
    finally:
        if not packets:
            container.close()


def _finalise(part: Path, start: float) -> SegmentInfo | None:
    found = _readable_packets(part)
    if found is None:
        return None
    packets, stream = found
    final = part.with_name(part.name[: -len(PART_SUFFIX)] + SEGMENT_SUFFIX)
    tmp = part.with_name(part.name + _SALVAGE_SUFFIX)
    try:
        with av.open(str(tmp), "w", format="mp4") as out:
            ostream = out.add_stream_from_template(stream)
            origin = packets[0].dts if packets[0].dts is not None else packets[0].pts
            for p in packets:
                p.pts -= origin
                p.dts = (p.dts if p.dts is not None else p.pts + origin) - origin
                p.stream = ostream
                out.mux(p)
        last = max(packets, key=lambda p: p.pts)
        step = last.duration or (packets[-1].pts - packets[-2].pts if len(packets) > 1 else 0)
        tb = stream.time_base
        end = start + float((last.pts + max(step, 0)) * tb)
        atomic_replace(tmp, final)
    finally:
        stream.container.close()
        tmp.unlink(missing_ok=True)
    keyframes = sum(1 for p in packets if p.is_keyframe)
    return SegmentInfo(final, start, end, final.stat().st_size, len(packets), keyframes)


def recover_parts(camera_dir: Path) -> RecoveryReport:
    """Finalise (if playable) or delete every leftover ``.part`` under ``camera_dir``.

    Call it only when no recorder of that camera is running.
    """
    finalised: list[SegmentInfo] = []
    removed: list[Path] = []
    if not camera_dir.is_dir():
        return RecoveryReport(finalised, removed)
    for tmp in camera_dir.rglob(f"*{PART_SUFFIX}{_SALVAGE_SUFFIX}"):
        tmp.unlink(missing_ok=True)
    for part in sorted(camera_dir.rglob(f"*{PART_SUFFIX}")):
        start = start_from_name(part)
        info = None
        if start is not None:
            try:
                info = _finalise(part, start)
            except (av.FFmpegError, OSError, ValueError) as exc:
                log.warning("recorder: leftover %s could not be finalised (%s); removing it", part, exc)
        if info is not None:
            finalised.append(info)
            log.info("recorder: finalised leftover %s (%d frames)", info.path, info.frames)
        else:
            removed.append(part)
            log.info("recorder: removed unplayable leftover %s", part)
        part.unlink(missing_ok=True)
    return RecoveryReport(finalised, removed)
