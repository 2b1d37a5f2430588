"""Leftover ``.part`` segments (a killed recorder, a failed write or close): finalised, never lost.

Segments are written as fragmented MP4, so a ``.part`` file left by a killed
process or a failed write holds every GOP that was complete before.
:func:`recover_part` copies those packets (remux, no decode) into the final
``.mp4``. What happens to a ``.part``:

* readable packets: finalised into the ``.mp4`` and reported;
* the copy fails for want of space or an I/O error: the ``.part`` is kept as
  it is, to be tried again later (the disk may be full right now);
* an MP4 header with no packet at all (a recorder killed right after opening
  a segment) or an empty file: removed, there is nothing in it;
* anything else (not a readable MP4): moved to the quarantine folder
  (:mod:`camfleet.recording.quarantine`), never deleted.

Nothing here ever references a ``.part`` file from the store.
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from .paths import PART_SUFFIX, SEGMENT_SUFFIX, atomic_replace, start_from_name
from .quarantine import quarantine
from .segment import SegmentInfo

log = logging.getLogger("camfleet.recording")

_SALVAGE_SUFFIX = ".salvage"
_HEADER_MAX = 4096
"""Bytes (at most) of the ftyp+moov header a segment starts with; a file without packets that is
larger, or that holds a fragment (``moof``), held footage we could not read."""


class Outcome(enum.Enum):
    """What :func:`recover_part` did with one ``.part`` file."""

    FINALISED = "finalised"
    KEPT = "kept"  # not finalised now (no space, I/O error): try again later
    REMOVED = "removed"  # held no packet at all
    QUARANTINED = "quarantined"  # not a readable MP4


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover_parts` did with each ``.part`` file.

    Segments finalised; ``.part`` files removed (no packet), kept for a later
    try, or quarantined (unreadable; their new paths).
    """

    finalised: list[SegmentInfo]
    removed: list[Path]
    kept: list[Path] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)


class _Unreadable(Exception):
    """The file is not a readable MP4 (as opposed to an I/O error while reading it)."""


def _readable_packets(part: Path) -> tuple[list[Any], Any] | None:
    """The complete packets of a (possibly truncated) fragmented MP4, with its video stream.

    None: a readable MP4 without a single packet. Raises :class:`_Unreadable`
    for a file that is not a readable MP4, OSError for an I/O error.
    """
    size = part.stat().st_size
    if size == 0:
        return None
    try:
        container = av.open(str(part))
    except (av.InvalidDataError, ValueError) as exc:
        raise _Unreadable(str(exc)) from exc
    except av.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise
        raise _Unreadable(str(exc)) from exc
    packets: list[Any] = []
    try:
        if not container.streams.video:
            raise _Unreadable("no video stream")
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
        if not packets and (size > _HEADER_MAX or b"moof" in part.read_bytes()):
            raise _Unreadable("no complete keyframe in the file")  # bytes we cannot read: keep them
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


def recover_part(part: Path, recordings_dir: Path) -> tuple[Outcome, SegmentInfo | Path | None]:
    """Finalise, keep, remove or quarantine one ``.part`` under ``recordings_dir`` (see the module).

    Returns the outcome with the finalised segment (FINALISED), the
    quarantined file's new path (QUARANTINED), or None.
    """
    tmp = part.with_name(part.name + _SALVAGE_SUFFIX)
    start = start_from_name(part)
    try:
        if start is None:
            raise _Unreadable("not a segment name")
        info = _finalise(part, start)
    except _Unreadable as exc:
        tmp.unlink(missing_ok=True)
        try:
            return Outcome.QUARANTINED, quarantine(recordings_dir, part, f"unrecoverable leftover: {exc}")
        except OSError as move_error:  # e.g. another filesystem: keep it where it is
            log.warning("recorder: could not quarantine %s (%s); kept in place", part, move_error)
            return Outcome.KEPT, None
    except (av.FFmpegError, OSError, ValueError) as exc:  # no space, I/O error: the bytes are still there
        tmp.unlink(missing_ok=True)
        log.warning("recorder: leftover %s not finalised now (%s); kept for a later try", part, exc)
        return Outcome.KEPT, None
    if info is None:
        part.unlink(missing_ok=True)
        log.info("recorder: removed leftover %s (a header without a single packet)", part)
        return Outcome.REMOVED, None
    part.unlink(missing_ok=True)
    log.info("recorder: finalised leftover %s (%d frames)", info.path, info.frames)
    return Outcome.FINALISED, info


def recover_parts(camera_dir: Path, *, skip: Collection[Path] = ()) -> RecoveryReport:
    """Recover every leftover ``.part`` under ``camera_dir`` (a camera's folder of the recordings).

    Call it only when no recorder of that camera writes, or name the
    ``.part`` it writes in ``skip``.
    """
    report = RecoveryReport([], [])
    if not camera_dir.is_dir():
        return report
    recordings_dir = camera_dir.parent
    for tmp in camera_dir.rglob(f"*{PART_SUFFIX}{_SALVAGE_SUFFIX}"):
        tmp.unlink(missing_ok=True)  # a copy interrupted by a kill: its .part is still there
    for part in sorted(camera_dir.rglob(f"*{PART_SUFFIX}")):
        if part in skip:
            continue
        outcome, result = recover_part(part, recordings_dir)
        if outcome is Outcome.FINALISED:
            assert isinstance(result, SegmentInfo)
            report.finalised.append(result)
        elif outcome is Outcome.QUARANTINED:
            assert isinstance(result, Path)
            report.quarantined.append(result)
        elif outcome is Outcome.REMOVED:
            report.removed.append(part)
        else:
            report.kept.append(part)
    return report
