"""The start-up storage check touches only camfleet's own files and never deletes one (issue 12, item 10).

Unindexed ``.mp4`` files outside camfleet's layout (odd names, folders that
are not camera names, wrong date folders, symlinks, the top level) are left
exactly as they were; unplayable files in camfleet's layout are moved to
``.quarantine/`` and counted; a playable one is indexed once, however many
times the check runs.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from camfleet.cli.storage import app
from camfleet.recording import check_storage, segment_relpath
from camfleet.recording.paths import parse_segment_relpath
from camfleet.store import SegmentRecord, Store
from tests.support.recording import write_clip

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 s, 15 fps H.264 MP4 (64x64)."""
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    """Every file (not under .quarantine) and symlink under ``root`` with its content digest."""
    return {p.relative_to(root).as_posix(): (p.readlink().as_posix() if p.is_symlink() else _digest(p))
            for p in root.rglob("*") if (p.is_file() or p.is_symlink()) and ".quarantine" not in p.parts}


def _foreign(rec: Path, clip: Path, tmp_path: Path) -> dict[str, bytes | Path]:
    """Files a user or another program put under the recordings directory."""
    outside = tmp_path / "elsewhere.mp4"
    shutil.copyfile(clip, outside)
    files: dict[str, bytes | Path] = {
        "holiday.mp4": b"my own holiday video, not playable by PyAV",  # top level
        "My Videos/clip.mp4": clip,  # playable, in a folder that is no camera name
        "a/2020/odd.mp4": b"junk",  # a camera folder, but not its layout
        "a/2026-01-15/08/1800000000000.mp4": clip,  # date/hour folders that do not match the name
        f"{segment_relpath('a', NOW)[:-4]}-copy.mp4": b"a user's copy",  # odd name in the right folder
        "a/2027-01-15/08/01800000000000.mp4": b"leading zero",
    }
    for rel, content in files.items():
        path = rec / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, path)
        else:
            path.write_bytes(content)
    link = rec / segment_relpath("a", NOW + 50)  # in the layout, but a symlink leading outside
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    files[link.relative_to(rec).as_posix()] = outside
    return files


def test_layout_parser_accepts_only_camfleets_own_paths() -> None:
    rel = segment_relpath("door", NOW + 0.123)
    assert parse_segment_relpath(rel) == ("door", pytest.approx(NOW + 0.123))
    for bad in ("door/x.mp4", "door/2027-01-15/08/1.mp4", "d oor/" + rel.split("/", 1)[1],
                rel + ".part", rel.replace(".mp4", ".MP4"), "../" + rel, "/abs/" + rel):
        assert parse_segment_relpath(bad) is None, bad


def test_check_never_deletes_and_leaves_foreign_files_alone(clip: Path, tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    store = Store.open(f"sqlite:///{tmp_path}/db.sqlite")
    foreign = _foreign(rec, clip, tmp_path)
    own_playable = rec / segment_relpath("a", NOW + 10)
    own_playable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clip, own_playable)
    own_broken = rec / segment_relpath("a", NOW + 20)
    own_broken.write_bytes(b"\x00\x00\x00\x18ftypisom but then nothing")
    before = _tree(rec)

    report = check_storage(store, rec, repair=True)

    foreign_rels = set(foreign)
    assert set(report.foreign_files) == foreign_rels
    assert report.files_indexed == [own_playable.relative_to(rec).as_posix()]
    broken_rel = own_broken.relative_to(rec).as_posix()
    assert report.files_quarantined == [broken_rel]
    after = _tree(rec)
    for rel in foreign_rels:  # every foreign file is exactly where and what it was
        assert after[rel] == before[rel], rel
    assert not own_broken.exists()
    moved = rec / ".quarantine" / broken_rel
    assert _digest(moved) == before[broken_rel]  # moved, not deleted
    assert report.quarantined.files == 1 and report.quarantined.bytes == moved.stat().st_size
    assert (tmp_path / "elsewhere.mp4").exists()

    # a second check: nothing new indexed, the quarantine is not rescanned, nothing moved
    again = check_storage(store, rec, repair=True)
    assert again.files_indexed == [] and again.files_quarantined == [] and again.ok
    assert set(again.foreign_files) == foreign_rels
    assert _tree(rec) == after and moved.exists()
    assert [s.path for s in store.query_segments()] == [own_playable.relative_to(rec).as_posix()]
    store.close()


def test_a_quarantined_name_is_never_overwritten(clip: Path, tmp_path: Path) -> None:
    rec = tmp_path / "recordings"
    store = Store.open(f"sqlite:///{tmp_path}/db.sqlite")
    path = rec / segment_relpath("a", NOW)
    path.parent.mkdir(parents=True)
    for content in (b"first", b"second"):
        path.write_bytes(content)
        check_storage(store, rec, repair=True)
    qdir = rec / ".quarantine" / path.relative_to(rec).parent
    assert sorted(p.read_bytes() for p in qdir.iterdir()) == [b"first", b"second"]
    store.close()


def test_a_segment_is_never_indexed_twice(clip: Path, tmp_path: Path) -> None:
    """The unique index on segments.path (migration 0004) and the upsert: one row per file."""
    store = Store.open(f"sqlite:///{tmp_path}/db.sqlite")
    rec = tmp_path / "recordings"
    rel = segment_relpath("a", NOW)
    (rec / rel).parent.mkdir(parents=True)
    shutil.copyfile(clip, rec / rel)
    seg = SegmentRecord(camera="a", path=rel, start=NOW, end=NOW + 1, size=1, frames=15, keyframes=1)
    first = store.add_segment(seg)
    again = SegmentRecord(camera="a", path=rel, start=NOW, end=NOW + 1, size=2, frames=15, keyframes=1)
    assert store.add_segment(again) == first  # the recorder's message delivered twice
    check_storage(store, rec, repair=True)
    check_storage(store, rec, repair=True)
    rows = store.query_segments()
    assert [(r.id, r.path, r.size) for r in rows] == [(first, rel, 2)]
    store.close()


def test_cli_check_reports_foreign_and_quarantined_files(clip: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "camfleet.yaml"
    cfg_path.write_text(f"""
data_dir: {tmp_path / "data"}
pipelines: {{p: [motion: {{}}]}}
cameras:
  a: {{pipeline: p, sources: [{{url: "synthetic://a", roles: [detect, record]}}]}}
""")
    rec = tmp_path / "data" / "recordings"
    (rec / "My Videos").mkdir(parents=True)
    (rec / "My Videos" / "x.mp4").write_bytes(b"mine")
    broken = rec / segment_relpath("a", NOW)
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"broken")
    part = rec / (segment_relpath("a", NOW + 10) + ".part")
    part.write_bytes(b"kept after a failed write")
    result = CliRunner().invoke(app, ["check", "--repair", str(cfg_path)])
    assert result.exit_code == 0, result.output
    assert "not camfleet's (left alone): My Videos/x.mp4" in result.output
    assert "1 unplayable files quarantined" in result.output
    assert "quarantine: 1 files" in result.output
    assert f"unfinished (.part, finalised by the camera's recorder): {part.relative_to(rec).as_posix()}" \
        in result.output and part.exists()
    assert (rec / "My Videos" / "x.mp4").read_bytes() == b"mine"
