"""Retention by mode and age, the storage floor, retained events, and the storage check.

Segments here are small real MP4 files (one encoded once) with rows in a real
SQLite store; free space is injected.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest

from camfleet.config import Config, load_config_text
from camfleet.recording import RetentionManager, check_storage, probe_segment, segment_relpath
from camfleet.store import ActivityRecord, EventRecord, SegmentRecord, Store
from tests.support.recording import write_clip

pytestmark = pytest.mark.unit

DAY = 86400.0
NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s, 15 fps H.264 MP4 (64x64), encoded once."""
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def make_config(tmp_path: Path, cameras: str, min_free_mb: float = 0.0) -> Config:
    return load_config_text(f"""
data_dir: {tmp_path}
storage: {{min_free_mb: {min_free_mb}}}
pipelines: {{p: [motion: {{}}]}}
cameras:
{cameras}
""")


def cam(name: str, record: str) -> str:
    return (f"  {name}: {{pipeline: p, sources: [{{url: 'synthetic://{name}', roles: [detect, record]}}], "
            f"record: {record}}}\n")


class Fixture:
    def __init__(self, tmp_path: Path, clip: Path) -> None:
        self.dir = tmp_path / "recordings"
        self.store = Store.open(f"sqlite:///{tmp_path}/db.sqlite")
        self.clip = clip

    def add(self, camera: str, start: float, end: float) -> SegmentRecord:
        rel = segment_relpath(camera, start)
        path = self.dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.clip, path)
        seg = SegmentRecord(camera=camera, path=rel, start=start, end=end, size=path.stat().st_size,
                            frames=15, keyframes=1)
        self.store.add_segment(seg)
        return seg

    def paths(self, camera: str | None = None) -> set[str]:
        return {s.path for s in self.store.query_segments(camera=camera)}

    def files(self) -> set[str]:
        return {p.relative_to(self.dir).as_posix() for p in self.dir.rglob("*.mp4")}


@pytest.fixture
def fx(tmp_path: Path, clip: Path) -> Fixture:
    return Fixture(tmp_path, clip)


def test_continuous_mode_keeps_each_class_for_its_own_days(fx: Fixture, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, cam("c", "{mode: continuous, pre_capture: 2, post_capture: 2, "
                                     "retain_days: {continuous: 1, motion: 3, events: 5}}"))
    plain_old = fx.add("c", NOW - 2 * DAY - 10, NOW - 2 * DAY)
    motion_2d = fx.add("c", NOW - 2 * DAY + 100, NOW - 2 * DAY + 110)
    motion_4d = fx.add("c", NOW - 4 * DAY, NOW - 4 * DAY + 10)
    event_4d = fx.add("c", NOW - 4 * DAY + 100, NOW - 4 * DAY + 110)
    recent = fx.add("c", NOW - 0.5 * DAY, NOW - 0.5 * DAY + 10)
    fx.store.add_activity([
        ActivityRecord("c", "motion", NOW - 2 * DAY + 111, NOW - 2 * DAY + 130),  # within post_capture
        ActivityRecord("c", "motion", NOW - 4 * DAY + 5, NOW - 4 * DAY + 6),
        ActivityRecord("c", "event", NOW - 4 * DAY + 90, NOW - 4 * DAY + 99),  # within pre_capture
    ])
    report = RetentionManager(fx.store, cfg, free_bytes=lambda _p: 10**12).run_once(NOW)
    deleted = {d.path: d.reason for d in report.deleted}
    assert set(deleted) == {plain_old.path, motion_4d.path}
    assert "retain_days.continuous" in deleted[plain_old.path]
    assert "retain_days.motion" in deleted[motion_4d.path]
    assert fx.paths() == {motion_2d.path, event_4d.path, recent.path} == fx.files()


def test_motion_and_events_modes_keep_only_widened_activity(fx: Fixture, tmp_path: Path) -> None:
    rec = "{{mode: {m}, pre_capture: 5, post_capture: 5}}"
    cfg = make_config(tmp_path, cam("m", rec.format(m="motion")) + cam("e", rec.format(m="events")))
    t0 = NOW - 1000
    segs = {c: [fx.add(c, t0 + 4 * i, t0 + 4 * i + 4) for i in range(50)] for c in ("m", "e")}
    recent = {c: fx.add(c, NOW - 60, NOW - 56) for c in ("m", "e")}  # activity may still claim it
    for c in ("m", "e"):
        fx.store.add_activity([ActivityRecord(c, "motion", t0 + 101, t0 + 102),
                               ActivityRecord(c, "event", t0 + 150, t0 + 151)])
    report = RetentionManager(fx.store, cfg, free_bytes=lambda _p: 10**12).run_once(NOW)
    assert report.deleted and all("mode" in d.reason for d in report.deleted)
    # motion [101, 102] widened to [96, 107] → segments 96-100, 100-104, 104-108; event [145, 156]
    motion_kept = {segs["m"][i].path for i in (24, 25, 26)}
    event_kept = {segs["m"][i].path for i in (36, 37, 38)}
    assert fx.paths("m") == motion_kept | event_kept | {recent["m"].path}
    assert fx.paths("e") == {segs["e"][i].path for i in (36, 37, 38)} | {recent["e"].path}
    assert fx.paths() == fx.files()


def test_a_running_event_keeps_its_footage_in_events_mode(fx: Fixture, tmp_path: Path) -> None:
    cfg = make_config(tmp_path, cam("e", "{mode: events, pre_capture: 2, post_capture: 2}"))
    before = fx.add("e", NOW - 900, NOW - 896)
    during = [fx.add("e", NOW - 600 + 4 * i, NOW - 596 + 4 * i) for i in range(3)]
    fx.store.upsert_event(EventRecord(id="running", camera="e", label="car", start=NOW - 597))
    report = RetentionManager(fx.store, cfg, free_bytes=lambda _p: 10**12).run_once(NOW)
    assert [d.path for d in report.deleted] == [before.path]
    assert fx.paths() == {s.path for s in during}


def _budget(root: Path, total: int) -> Callable[[Path], int]:
    def free(_path: Path) -> int:
        used = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
        return total - used
    return free


def test_storage_floor_deletes_oldest_continuous_first_and_never_retained_events(
    fx: Fixture, tmp_path: Path
) -> None:
    cfg = make_config(tmp_path, cam("a", "{mode: continuous}") + cam("b", "{mode: continuous}"),
                      min_free_mb=0.1)
    size = fx.clip.stat().st_size
    a = [fx.add("a", NOW - 1000 + 20 * i, NOW - 990 + 20 * i) for i in range(6)]
    b = [fx.add("b", NOW - 995 + 20 * i, NOW - 985 + 20 * i) for i in range(6)]
    fx.store.upsert_event(EventRecord(id="keep", camera="a", label="person", start=a[0].start + 1,
                                      end=a[0].start + 2, retained=True))
    fx.store.add_activity([ActivityRecord("b", "motion", b[0].start, b[0].end)])
    floor = int(0.1 * 2**20)
    total = floor + 12 * size - int(3.5 * size)  # four segments must go
    report = RetentionManager(fx.store, cfg, free_bytes=_budget(fx.dir, total)).run_once(NOW)
    assert report.below_floor and report.free_after is not None and report.free_after >= floor
    gone = [d.path for d in report.deleted]
    # oldest continuous footage across both cameras; a[0] (retained event) and b[0] (motion) spared
    assert gone == [a[1].path, b[1].path, a[2].path, b[2].path]
    assert all(d.reason.startswith("storage floor") for d in report.deleted)
    # an unreachable floor empties everything except footage of the retained event
    report = RetentionManager(fx.store, cfg, free_bytes=lambda _p: 0).run_once(NOW)
    assert fx.paths() == {a[0].path} == fx.files()
    assert report.kept_retained == 1 and report.free_after == 0


def test_check_storage_finds_and_repairs_both_kinds_of_mismatch(fx: Fixture, tmp_path: Path) -> None:
    kept = fx.add("a", NOW, NOW + 1)
    lost = fx.add("a", NOW + 1, NOW + 2)
    (fx.dir / lost.path).unlink()
    evil = SegmentRecord(camera="a", path="../outside.mp4", start=NOW + 2, end=NOW + 3, size=1)
    fx.store.add_segment(evil)
    outside = tmp_path / "outside.mp4"
    shutil.copyfile(fx.clip, outside)
    orphan = fx.dir / segment_relpath("a", NOW + 5)
    shutil.copyfile(fx.clip, orphan)
    junk = fx.dir / segment_relpath("a", NOW + 7)
    junk.write_bytes(b"not a video")
    part = fx.dir / (segment_relpath("a", NOW + 9) + ".part")
    part.write_bytes(b"being written")
    report = check_storage(fx.store, fx.dir, repair=False)
    assert not report.ok
    assert {r.path for r in report.missing_files} == {lost.path, evil.path}
    assert set(report.orphan_files) == {orphan.relative_to(fx.dir).as_posix(),
                                        junk.relative_to(fx.dir).as_posix()}
    report = check_storage(fx.store, fx.dir, repair=True)
    assert report.rows_deleted == 2
    assert report.files_indexed == [orphan.relative_to(fx.dir).as_posix()]
    assert report.files_quarantined == [junk.relative_to(fx.dir).as_posix()]
    assert (fx.dir / ".quarantine" / junk.relative_to(fx.dir)).read_bytes() == b"not a video"
    assert outside.exists() and part.exists()  # never touched
    assert check_storage(fx.store, fx.dir).ok
    rows = {s.path: s for s in fx.store.query_segments()}
    assert set(rows) == {kept.path, orphan.relative_to(fx.dir).as_posix()}
    indexed = rows[orphan.relative_to(fx.dir).as_posix()]
    assert indexed.start == pytest.approx(NOW + 5) and indexed.end == pytest.approx(NOW + 6, abs=0.1)
    probe = probe_segment(orphan)
    assert probe is not None and probe.frames == 15 and probe.duration == pytest.approx(1.0, abs=0.01)


def test_row_is_deleted_before_its_file(fx: Fixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between the two steps leaves a file without a row (repairable), never the reverse."""
    cfg = make_config(tmp_path, cam("c", "{retain_days: {continuous: 0}}"))
    seg = fx.add("c", NOW - 100, NOW - 90)
    from camfleet.recording import retention

    def crash(_root: Path, _rel: str) -> bool:
        raise RuntimeError("power cut")

    monkeypatch.setattr(retention, "remove_segment_file", crash)
    with pytest.raises(RuntimeError):
        RetentionManager(fx.store, cfg, free_bytes=lambda _p: 10**12).run_once(NOW)
    assert fx.paths() == set() and fx.files() == {seg.path}
    report = check_storage(fx.store, fx.dir, repair=True)
    assert report.files_indexed == [seg.path]


def test_fraction_time_base_probe(clip: Path) -> None:
    probe = probe_segment(clip)
    assert probe is not None and probe.keyframes >= 1
    assert Fraction(probe.duration).limit_denominator(100) == 1
