"""Consistency of the recordings directory and the store's segment rows.

:func:`check_storage` finds rows whose file is missing (or whose path would
leave the recordings directory) and ``.mp4`` files that no row references
(``.part`` files are being written by a recorder and are left alone). With
``repair`` the bad rows are deleted, playable unreferenced files are indexed
(nothing already recorded is lost) and unplayable ones are deleted.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import av

from .paths import SEGMENT_SUFFIX, UnsafePath, check_camera, relpath, safe_join, start_from_name

if TYPE_CHECKING:
    from camfleet.store import SegmentRecord, Store

log = logging.getLogger("camfleet.recording")


@dataclass(frozen=True)
class SegmentProbe:
    """What a segment file holds: packets, keyframes and duration (seconds), read without decoding."""

    frames: int
    keyframes: int
    duration: float


def probe_segment(path: Path) -> SegmentProbe | None:
    """Read a segment's packets (no decode); None if it is not a playable video file."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            stream = container.streams.video[0]
            frames = keyframes = 0
            first: int | None = None
            last = step = 0
            with contextlib.suppress(av.FFmpegError):
                for packet in container.demux(stream):
                    if packet.pts is None or packet.size == 0:
                        continue
                    if frames == 0 and not packet.is_keyframe:
                        return None
                    first = packet.pts if first is None else min(first, packet.pts)
                    step = packet.duration or (packet.pts - last if packet.pts > last else step)
                    last = max(last, packet.pts)
                    frames += 1
                    keyframes += int(packet.is_keyframe)
            if first is None:
                return None
            return SegmentProbe(frames, keyframes, float((last + step - first) * (stream.time_base or 0)))
    except (av.FFmpegError, OSError, ValueError):
        return None


@dataclass
class StorageReport:
    """Rows without files, files without rows, and what a repair did (paths relative to the dir)."""

    rows: int = 0
    files: int = 0
    missing_files: list[SegmentRecord] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    rows_deleted: int = 0
    files_indexed: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row has its file and every file its row."""
        return not self.missing_files and not self.orphan_files


def _row_path_ok(recordings_dir: Path, rel: str) -> bool:
    try:
        return safe_join(recordings_dir, rel).is_file()
    except UnsafePath:
        return False


def check_storage(store: Store, recordings_dir: Path, repair: bool = False) -> StorageReport:
    """Compare the segment rows of ``store`` with the files under ``recordings_dir``; repair if asked."""
    from camfleet.store import SegmentRecord  # noqa: PLC0415 (recording must import without the store)

    report = StorageReport()
    rows = store.query_segments()
    report.rows = len(rows)
    known = set()
    for row in rows:
        known.add(row.path)
        if not _row_path_ok(recordings_dir, row.path):
            report.missing_files.append(row)
    files = sorted(p for p in recordings_dir.rglob(f"*{SEGMENT_SUFFIX}") if p.is_file()) \
        if recordings_dir.is_dir() else []
    report.files = len(files)
    for path in files:
        rel = relpath(recordings_dir, path)
        if rel not in known:
            report.orphan_files.append(rel)
    if not repair:
        return report
    ids = [r.id for r in report.missing_files if r.id is not None]
    if ids:
        report.rows_deleted = store.delete_segments(ids)
    for rel in report.orphan_files:
        path = recordings_dir / rel
        camera = rel.split("/", 1)[0]
        start = start_from_name(rel)
        probe = probe_segment(path)
        try:
            check_camera(camera)
        except ValueError:
            probe = None
        if probe is None or start is None:
            path.unlink(missing_ok=True)
            report.files_deleted.append(rel)
            log.info("storage check: deleted unplayable unindexed file %s", rel)
            continue
        store.add_segment(SegmentRecord(
            camera=camera, path=rel, start=start, end=start + probe.duration, size=path.stat().st_size,
            frames=probe.frames, keyframes=probe.keyframes,
        ))
        report.files_indexed.append(rel)
        log.info("storage check: indexed %s", rel)
    return report
