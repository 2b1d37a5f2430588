"""Consistency of the recordings directory and the store's segment rows.

:func:`check_storage` finds rows whose file is missing (or whose path would
leave the recordings directory) and ``.mp4`` files that no row references
(``.part`` files are being written by a recorder and are left alone). With
``repair`` the bad rows are deleted and unreferenced files in camfleet's own
layout (``<camera>/<YYYY-MM-DD>/<HH>/<start-ms>.mp4``, see
:func:`~camfleet.recording.paths.parse_segment_relpath`) are indexed when
playable and moved to the quarantine folder when not. Nothing is ever
deleted: a file outside that layout (another program's, a user's copy, a
symlink) is not camfleet's and is only reported (``foreign_files``); the
quarantine folder itself is never scanned, only counted.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import av

from .paths import PART_SUFFIX, SEGMENT_SUFFIX, UnsafePath, parse_segment_relpath, safe_join
from .quarantine import QUARANTINE_DIR, QuarantineUsage, quarantine, quarantine_usage

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
    """Rows without files, files without rows, and what a repair did (paths relative to the dir).

    ``orphan_files`` are unindexed files in camfleet's layout (a repair
    indexes or quarantines them); ``foreign_files`` are ``.mp4`` files
    outside it (never touched); ``quarantined`` is what the quarantine
    folder holds after the check; ``part_files`` are ``.part`` files (being
    written, or kept after a failed write for the recorder to finalise).
    """

    rows: int = 0
    files: int = 0
    missing_files: list[SegmentRecord] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    foreign_files: list[str] = field(default_factory=list)
    part_files: list[str] = field(default_factory=list)
    rows_deleted: int = 0
    files_indexed: list[str] = field(default_factory=list)
    files_quarantined: list[str] = field(default_factory=list)
    quarantined: QuarantineUsage = field(default_factory=lambda: QuarantineUsage(0, 0))

    @property
    def ok(self) -> bool:
        """True when every row has its file and every file in camfleet's layout its row."""
        return not self.missing_files and not self.orphan_files


def _row_path_ok(recordings_dir: Path, rel: str) -> bool:
    try:
        return safe_join(recordings_dir, rel).is_file()
    except UnsafePath:
        return False


def _segment_files(recordings_dir: Path, suffix: str = SEGMENT_SUFFIX) -> list[Path]:
    """Every ``*suffix`` file under ``recordings_dir`` outside the quarantine folder (symlinks included)."""
    if not recordings_dir.is_dir():
        return []
    qdir = recordings_dir / QUARANTINE_DIR
    return sorted(p for p in recordings_dir.rglob(f"*{suffix}")
                  if (p.is_file() or p.is_symlink()) and qdir not in p.parents)


def check_storage(store: Store, recordings_dir: Path, repair: bool = False) -> StorageReport:
    """Compare the segment rows of ``store`` with the files under ``recordings_dir``; repair if asked.

    A repair deletes rows whose file is missing, indexes playable unindexed
    files of camfleet's layout and quarantines unplayable ones; it never
    deletes a file and never touches one outside that layout.
    """
    from camfleet.store import SegmentRecord  # noqa: PLC0415 (recording must import without the store)

    report = StorageReport()
    rows = store.query_segments()
    report.rows = len(rows)
    known = set()
    for row in rows:
        known.add(row.path)
        if not _row_path_ok(recordings_dir, row.path):
            report.missing_files.append(row)
    files = _segment_files(recordings_dir)
    report.files = len(files)
    report.part_files = [p.relative_to(recordings_dir).as_posix()
                         for p in _segment_files(recordings_dir, PART_SUFFIX)]
    for path in files:
        rel = path.relative_to(recordings_dir).as_posix()
        if rel in known:
            continue
        # a symlink is never camfleet's (the recorder writes plain files): following it could
        # index or move something outside the recordings directory
        if path.is_symlink() or parse_segment_relpath(rel) is None:
            report.foreign_files.append(rel)
        else:
            report.orphan_files.append(rel)
    if repair:
        _repair(store, recordings_dir, report, SegmentRecord)
    report.quarantined = quarantine_usage(recordings_dir)
    for rel in report.foreign_files:
        log.info("storage check: %s is not in camfleet's layout; left alone", rel)
    return report


def _repair(store: Store, recordings_dir: Path, report: StorageReport, record: type[SegmentRecord]) -> None:
    ids = [r.id for r in report.missing_files if r.id is not None]
    if ids:
        report.rows_deleted = store.delete_segments(ids)
    for rel in report.orphan_files:
        path = recordings_dir / rel
        parsed = parse_segment_relpath(rel)
        assert parsed is not None  # orphan_files holds only paths in camfleet's layout
        camera, start = parsed
        probe = probe_segment(path)
        if probe is None:
            try:
                quarantine(recordings_dir, path, "unplayable and not indexed")
            except OSError as exc:  # e.g. a camera folder on another filesystem: leave it be
                log.warning("storage check: could not quarantine %s (%s); left in place", rel, exc)
                continue
            report.files_quarantined.append(rel)
            continue
        store.add_segment(record(  # an upsert by path: a second repair cannot index it twice
            camera=camera, path=rel, start=start, end=start + probe.duration, size=path.stat().st_size,
            frames=probe.frames, keyframes=probe.keyframes,
        ))
        report.files_indexed.append(rel)
        log.info("storage check: indexed %s", rel)
