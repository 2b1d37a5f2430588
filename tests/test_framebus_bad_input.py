"""Bad input gets a clear error that names what and where, and nothing is damaged."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from camfleet import framebus as fb
from camfleet.framebus.layout import HEADER_DTYPE, field_offset

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("key", ["", "a b", "x" * 64, "../etc", "cam.1", "ä"])
def test_invalid_key(key: str) -> None:
    with pytest.raises(fb.InvalidKey, match="invalid ring key"):
        fb.FramePublisher(key, fb.FrameFormat(16, 16, "gray"))
    with pytest.raises(fb.InvalidKey):
        fb.subscribe(key)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0, 10, "gray"), "out of range"),
        ((15, 10, "yuv420p"), "even width and height"),
        ((16, 16, "yuv444p"), "unknown pixel format"),
        ((16, 16, "gray", (8,)), "stride 8 is smaller"),
        ((16, 16, "nv12", (16,)), "2 plane"),
    ],
)
def test_invalid_format(args: tuple, match: str) -> None:
    with pytest.raises(fb.InvalidFormat, match=match):
        fb.FrameFormat(*args)


def test_invalid_ring_options() -> None:
    fmt = fb.FrameFormat(16, 16, "gray")
    with pytest.raises(fb.InvalidFormat, match="slots must be"):
        fb.FramePublisher("opt", fmt, slots=1)
    with pytest.raises(fb.InvalidFormat, match="unknown policy"):
        fb.FramePublisher("opt", fmt, policy="block")  # type: ignore[arg-type]


def _publish_then_crash_copy(shm_dir: Path, key: str) -> Path:
    """Make a valid segment file for ``key`` with no publisher behind it."""
    with fb.FramePublisher("donor", fb.FrameFormat(16, 16, "gray")) as pub:
        data = Path(pub.path).read_bytes()
    path = shm_dir / f"camfleet.{key}.frames"
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_missing_ring() -> None:
    with pytest.raises(fb.NotFound, match=r"no ring 'ghost'.*does not exist"):
        fb.subscribe("ghost")


def test_ring_without_live_publisher_is_not_found(shm_dir: Path) -> None:
    path = _publish_then_crash_copy(shm_dir, "orphan")
    with pytest.raises(fb.NotFound, match="no live publisher"):
        fb.subscribe("orphan", connect_timeout=0.1)
    path.unlink()


def test_foreign_segment(shm_dir: Path) -> None:
    path = shm_dir / "camfleet.foreign.frames"
    path.write_bytes(b"GARBAGE!" + bytes(20000))
    path.chmod(0o600)
    with pytest.raises(fb.SegmentError, match=r"foreign.*not a camfleet ring segment \(bad magic\)"):
        fb.subscribe("foreign")
    assert path.read_bytes()[:8] == b"GARBAGE!"  # untouched
    path.unlink()


def test_truncated_segment(shm_dir: Path) -> None:
    path = _publish_then_crash_copy(shm_dir, "short")
    data = path.read_bytes()
    path.write_bytes(data[:100])
    with pytest.raises(fb.SegmentError, match=r"truncated \(100 bytes"):
        fb.subscribe("short")
    path.write_bytes(data[:-4096])
    with pytest.raises(fb.SegmentError, match="truncated or damaged"):
        fb.subscribe("short")
    path.unlink()


def test_wrong_layout_version(shm_dir: Path) -> None:
    path = _publish_then_crash_copy(shm_dir, "old")
    with open(path, "r+b") as f:
        f.seek(field_offset(HEADER_DTYPE, "version"))
        f.write((99).to_bytes(4, "little"))
    with pytest.raises(fb.LayoutMismatch, match="layout version 99, this camfleet reads version 1"):
        fb.subscribe("old")
    path.unlink()


def test_segment_of_another_user_is_refused_and_left_alone(shm_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a file owned by another user")
    path = _publish_then_crash_copy(shm_dir, "theirs")
    os.chown(path, 65534, 65534)
    before = path.read_bytes()
    with pytest.raises(fb.NotOwner, match="belongs to uid 65534"):
        fb.subscribe("theirs")
    with pytest.raises(fb.NotOwner, match="belongs to uid 65534"):
        fb.FramePublisher("theirs", fb.FrameFormat(16, 16, "gray"))
    assert path.read_bytes() == before
    path.unlink()


def test_group_readable_segment_is_refused(shm_dir: Path) -> None:
    path = _publish_then_crash_copy(shm_dir, "open")
    path.chmod(0o644)
    with pytest.raises(fb.SegmentError, match=r"mode 0644.*owner-only"):
        fb.subscribe("open")
    path.unlink()


def test_segments_and_directory_are_owner_only() -> None:
    with fb.FramePublisher("perm", fb.FrameFormat(16, 16, "gray")) as pub:
        assert os.stat(pub.path).st_mode & 0o777 == 0o600
        with fb.PacketPublisher("perm") as pp:
            assert os.stat(pp.path).st_mode & 0o777 == 0o600


def test_wrong_data_does_not_corrupt_the_ring() -> None:
    fmt = fb.FrameFormat(16, 16, "gray")
    with fb.FramePublisher("safe", fmt, slots=2) as pub, fb.subscribe("safe", mode="sequential") as sub:
        pub.publish(np.full((16, 16), 5, np.uint8))
        with pytest.raises(fb.InvalidFormat):
            pub.publish(np.zeros((8, 8), np.uint8))
        with pytest.raises(fb.InvalidFormat):
            pub.publish(np.zeros((16, 16), np.uint16))  # wrong dtype: refused, not cast
        pub.publish(np.full((16, 16), 6, np.uint8))
        got = []
        for _ in range(2):
            with sub.next(1) as f:
                got.append((f.seq, int(f.array[0, 0])))
        assert got == [(1, 5), (2, 6)]
