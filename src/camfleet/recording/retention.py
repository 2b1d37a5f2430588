"""Retention: which segments are kept, by recording mode, age and the storage floor.

Each segment is classified by what it overlaps (activity spans widened by the
camera's ``pre_capture``/``post_capture``): ``events`` (an event span),
``motion`` (a motion span) or ``continuous`` (neither). A segment is kept
for the longest ``retain_days`` among the classes its mode keeps:

* ``continuous`` mode keeps every class (continuous footage for
  ``retain_days.continuous``, motion/event footage for their own days);
* ``motion`` mode keeps motion and event footage; ``events`` mode only event
  footage. Footage the mode does not keep is deleted once no activity could
  still claim it: ``pre_capture + post_capture + unclaimed_grace`` after its
  end (the grace covers motion spans that are reported when they end) -- the
  recorder always records, which is how pre-capture works.

Event activity is the ``event`` activity spans plus the events themselves
(a running event counts up to now). Motion still going on counts up to now
too: the pipeline journals a motion span ``open`` when motion starts and
extends it while it lasts; ``open_spans`` (the node's outbox journal, see
:func:`journal_open_spans`) says which spans are open, so their footage is
kept whatever end the store has seen so far (the pump may lag, the
pipeline may have been killed; its restart closes the span).

Storage floor: while free space on the recordings filesystem is below
``storage.min_free_mb`` (MiB), the API's cached clips (``<data_dir>/clips``,
copies of footage) are deleted first, then the oldest continuous footage
across cameras, then motion, then event footage.

Footage overlapping a *retained* event is never deleted. A segment's row is
deleted before its file, so a crash in between leaves a file without a row,
never a row without its file; :func:`~camfleet.recording.check.check_storage`
repairs such leftovers.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from camfleet.config import RecordSettings

from .check import StorageReport, check_storage
from .clip_cache import evict_until
from .paths import UnsafePath, safe_join

if TYPE_CHECKING:
    from camfleet.config import Config
    from camfleet.store import SegmentRecord, Store
    from camfleet.vocabulary import MotionSpan

OpenSpans = Callable[[str], "Sequence[MotionSpan]"]
"""A camera name -> its activity spans still open (see :func:`journal_open_spans`)."""

__all__ = [
    "Deletion",
    "RetentionManager",
    "RetentionReport",
    "StorageReport",
    "check_storage",
    "disk_free_bytes",
    "journal_open_spans",
    "remove_segment_file",
]

log = logging.getLogger("camfleet.recording")

DAY = 86400.0
MIB = 2**20
_RANK = {"continuous": 0, "motion": 1, "events": 2}


def disk_free_bytes(path: Path) -> int:
    """Free bytes (available to this user) on the filesystem holding ``path``."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


@dataclass(frozen=True)
class Deletion:
    """One deleted segment: camera, relative path, start/end (epoch s), size (bytes) and why."""

    camera: str
    path: str
    start: float
    end: float
    size: int
    reason: str


@dataclass
class RetentionReport:
    """What one retention pass deleted and kept; ``free_bytes`` before and after (None: not measured)."""

    deleted: list[Deletion] = field(default_factory=list)
    kept_retained: int = 0
    free_before: int | None = None
    free_after: int | None = None
    below_floor: bool = False
    clips_freed: int = 0  # bytes of cached clips the storage floor deleted before any segment

    @property
    def bytes_freed(self) -> int:
        """Total size of the deleted segments, bytes."""
        return sum(d.size for d in self.deleted)


def journal_open_spans(journal: Path) -> OpenSpans:
    """Read the open activity spans of a camera from the outbox journal file ``journal``.

    Each call opens the journal (another process's file; nothing is cached, an open span may
    close at any time); no file means no open span.
    """
    def read(camera: str) -> list[MotionSpan]:
        if not journal.exists():
            return []
        from camfleet.events.journal import Journal  # noqa: PLC0415 - the outbox only where a node has one

        with Journal(journal) as j:
            return j.open_spans(camera)

    return read


def _overlaps(start: float, end: float, spans: Sequence[tuple[float, float]]) -> bool:
    return any(s < end and start < e for s, e in spans)


class RetentionManager:
    """Applies the retention rules of ``config`` to the segments in ``store``.

    ``free_bytes(path)`` gives the free bytes of the filesystem holding
    ``path`` (injectable for tests); ``recordings_dir`` defaults to
    ``config.recordings_path``; ``unclaimed_grace`` (seconds) is how much
    longer than ``pre_capture + post_capture`` footage no activity claims is
    kept in ``motion``/``events`` mode.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        free_bytes: Callable[[Path], int] = disk_free_bytes,
        recordings_dir: Path | None = None,
        unclaimed_grace: float = 60.0,
        open_spans: OpenSpans | None = None,
    ) -> None:
        self.store = store
        self.open_spans = open_spans
        self.unclaimed_grace = unclaimed_grace
        self.config = config
        self.free_bytes = free_bytes
        self.recordings_dir = Path(recordings_dir) if recordings_dir is not None else config.recordings_path

    def settings(self, camera: str) -> RecordSettings:
        """The record settings of ``camera`` (defaults for a camera no longer configured)."""
        cam = self.config.cameras.get(camera)
        return cam.record if cam is not None else RecordSettings()

    @staticmethod
    def _classify(
        seg: SegmentRecord, s: RecordSettings, activity: dict[str, list[tuple[float, float]]]
    ) -> set[str]:
        lo, hi = seg.start - s.post_capture, seg.end + s.pre_capture  # widened spans, seen from the segment
        found = {"continuous"}
        if _overlaps(lo, hi, activity["motion"]):
            found.add("motion")
        if _overlaps(lo, hi, activity["event"]):
            found.add("events")
        return found

    def run_once(self, now: float | None = None) -> RetentionReport:
        """One pass: age/mode rules per camera, then the storage floor. ``now`` is epoch seconds."""
        now = time.time() if now is None else now
        report = RetentionReport()
        keep_class: dict[int, str] = {}
        candidates: list[SegmentRecord] = []
        for camera in sorted(self.store.segment_totals()):
            s = self.settings(camera)
            segs = self.store.query_segments(camera=camera)
            if not segs:
                continue
            retained = self.store.retained_spans(camera)
            activity: dict[str, list[tuple[float, float]]] = {"motion": [], "event": []}
            for a in self.store.query_activity(camera, segs[0].start - s.post_capture, now + 1):
                activity[a.kind].append((a.start, a.end))
            for a in self.open_spans(camera) if self.open_spans is not None else ():
                activity[a.kind].append((a.start, max(now, a.end)))  # still going on: up to now
            for ev in self.store.query_events(camera=camera, after=segs[0].start - DAY, limit=1_000_000):
                activity["event"].append((ev.start, now if ev.end is None else ev.end))
            modes = {"continuous": {"continuous", "motion", "events"}, "motion": {"motion", "events"},
                     "events": {"events"}}[s.mode]
            doomed: list[tuple[SegmentRecord, str]] = []
            for seg in segs:
                if _overlaps(seg.start, seg.end, retained):
                    report.kept_retained += 1
                    continue
                classes = self._classify(seg, s, activity) & modes
                if not classes:
                    if now - seg.end > s.pre_capture + s.post_capture + self.unclaimed_grace:
                        doomed.append((seg, f"mode {s.mode}: no {'/'.join(sorted(modes))} activity"))
                    continue
                days = max(getattr(s.retain_days, c) for c in classes)
                best = max(classes, key=lambda c: getattr(s.retain_days, c))
                if now - seg.end > days * DAY:
                    doomed.append((seg, f"older than retain_days.{best} ({days:g} d)"))
                else:
                    assert seg.id is not None
                    keep_class[seg.id] = max(classes, key=_RANK.__getitem__)  # its most valuable footage
                    candidates.append(seg)
            self._delete(doomed, report)
        self._floor(candidates, keep_class, report)
        return report

    def _floor(
        self, candidates: list[SegmentRecord], keep_class: dict[int, str], report: RetentionReport
    ) -> None:
        floor = int(self.config.storage.min_free_mb * MIB)
        free = self.free_bytes(self.recordings_dir)
        report.free_before = free
        if free >= floor:
            report.free_after = free
            return
        report.below_floor = True
        # exported clips are copies of footage the segments still hold: they go first, always
        clips_dir = self.config.data_path / "clips"
        report.clips_freed = evict_until(clips_dir, lambda: self.free_bytes(self.recordings_dir) >= floor)
        free = self.free_bytes(self.recordings_dir) if report.clips_freed else free
        order = sorted(candidates, key=lambda g: (_RANK[keep_class[g.id or 0]], g.start))
        for seg in order:
            if free >= floor:
                break
            self._delete([(seg, f"storage floor: {free / MIB:.0f} MiB free < {floor / MIB:.0f} MiB")], report)
            free = self.free_bytes(self.recordings_dir)
        report.free_after = free
        if free < floor:
            log.warning("retention: still below the storage floor (%d MiB free) with nothing left to delete",
                        free // MIB)

    def _delete(self, doomed: Sequence[tuple[SegmentRecord, str]], report: RetentionReport) -> None:
        if not doomed:
            return
        ids = [seg.id for seg, _ in doomed if seg.id is not None]
        self.store.delete_segments(ids)  # rows first: a crash leaves files without rows, repaired by check
        for seg, reason in doomed:
            remove_segment_file(self.recordings_dir, seg.path)
            report.deleted.append(Deletion(seg.camera, seg.path, seg.start, seg.end, seg.size, reason))
            log.info("retention: deleted %s (%s)", seg.path, reason)


def remove_segment_file(recordings_dir: Path, relative: str) -> bool:
    """Delete one segment file (never outside ``recordings_dir``) and prune empty parents; True if removed."""
    try:
        path = safe_join(recordings_dir, relative)
    except UnsafePath as exc:
        log.error("retention: refusing to delete %r: %s", relative, exc)
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    root = recordings_dir.resolve()
    parent = path.parent
    while parent.parent != root and root in parent.parents:  # prune hour/date dirs, keep the camera dir
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = parent.parent
    return True
