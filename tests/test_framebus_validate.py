"""validate_segment checks every header field, and a segment is built from the checked copy.

Each case crafts one bad field into a copy of a real segment (no publisher
behind it) and expects a SegmentError naming the ring and the field, before
anything is mapped.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from camfleet import framebus as fb
from camfleet.framebus import segment as segment_module
from camfleet.framebus.layout import HEADER_DTYPE, KIND_FRAMES, field_offset

pytestmark = pytest.mark.unit

FMT = fb.FrameFormat(16, 16, "gray")  # rows padded to 64 bytes: 1024-byte frames in 4096-byte slots


def _poke(path: Path, field: str, value: int, index: int = 0) -> None:
    """Overwrite header field ``field`` (item ``index`` of an array field) of the segment at ``path``."""
    dtype = HEADER_DTYPE.fields[field][0]  # type: ignore[index]
    base = dtype.base if dtype.subdtype else dtype
    offset = field_offset(HEADER_DTYPE, field) + index * base.itemsize
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, np.array(value, base).tobytes(), offset)
    finally:
        os.close(fd)


def _orphan_copy(shm_dir: Path, key: str, kind: str) -> Path:
    """A byte copy of a valid ``kind`` segment under ``key``, with no live publisher."""
    if kind == "frames":
        with fb.FramePublisher("donor", FMT) as pub:
            data = Path(pub.path).read_bytes()
    else:
        with fb.PacketPublisher("donor", capacity=64 * 1024):
            data = (shm_dir / "camfleet.donor.packets").read_bytes()
    path = shm_dir / f"camfleet.{key}.{kind}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


FRAME_CASES: list[tuple[str, int, int, str]] = [
    ("n_slots", 1000, 0, r"slot count 1000 is outside 2\.\.128"),
    ("n_slots", 0, 0, r"slot count 0 is outside"),
    ("slot_bytes", 8192, 0, r"8 slots of 8192 bytes are 65536 bytes, the file holds 32768"),
    ("slot_bytes", 100, 0, r"slot size 100 bytes"),
    ("strides", 8, 0, r"frame format: plane 0 stride 8 is smaller than its row \(16 bytes\)"),
    ("strides", 4096, 0, r"frame size 1024 bytes, but 16x16 gray with strides \(4096,\) is 65536"),
    ("frame_bytes", 1 << 40, 0, r"frame size 1099511627776 bytes"),
    ("n_planes", 7, 0, r"plane count 7 is outside 1\.\.4"),
    ("pix_fmt", 99, 0, r"frame format: 99 is not a valid PixelFormat"),
    ("width", 0, 0, r"frame format: frame size 0x16 out of range"),
    ("payload_offset", 4096, 0, r"payload offset 4096"),
]


@pytest.mark.parametrize(("field", "value", "index", "match"), FRAME_CASES,
                         ids=[f"{c[0]}={c[1]}" for c in FRAME_CASES])
def test_bad_frame_header_field_is_refused(shm_dir: Path, field: str, value: int, index: int,
                                           match: str) -> None:
    path = _orphan_copy(shm_dir, "crafted", "frames")
    _poke(path, field, value, index)
    with pytest.raises(fb.SegmentError, match=rf"ring 'crafted': .*{match}"):
        fb.subscribe("crafted")
    path.unlink()


PACKET_CASES: list[tuple[str, int, str]] = [
    ("extradata_len", 100_000, r"extradata length 100000 exceeds 4096 bytes"),
    ("capacity", 1 << 30, r"packet buffer capacity 1073741824 bytes; the file holds 65536"),
    ("n_slots", 10, r"packet index size 10 is outside 64\.\.65536"),
    ("time_base_den", 0, r"time base 1/0 is not positive"),
]


@pytest.mark.parametrize(("field", "value", "match"), PACKET_CASES, ids=[c[0] for c in PACKET_CASES])
def test_bad_packet_header_field_is_refused(shm_dir: Path, field: str, value: int, match: str) -> None:
    path = _orphan_copy(shm_dir, "crafted", "packets")
    _poke(path, field, value)
    with pytest.raises(fb.SegmentError, match=rf"ring 'crafted': .*{match}"):
        fb.subscribe_packets("crafted")
    path.unlink()


def test_validated_header_is_a_read_only_copy(shm_dir: Path) -> None:
    with fb.FramePublisher("cam", FMT) as pub:
        fd = os.open(pub.path, os.O_RDWR)
        try:
            header = segment_module.validate_segment(fd, "cam", KIND_FRAMES, Path(pub.path))
        finally:
            os.close(fd)
        assert not header.flags.writeable
        assert int(header["slot_bytes"]) == 4096


def test_segment_is_built_from_the_validated_copy(shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A header changed between the check and the mapping (TOCTOU) is never used."""
    real: Callable[..., np.ndarray] = segment_module.validate_segment

    def check_then_tamper(fd: int, key: str, kind: int | None, path: Path) -> np.ndarray:
        header = real(fd, key, kind, path)
        # what a hostile process could write right after the check
        _poke(path, "n_slots", 128)
        _poke(path, "width", 4096)
        _poke(path, "slot_bytes", 1 << 30)
        return header

    with fb.FramePublisher("cam", FMT, slots=4) as pub:
        pub.publish(np.full((16, 16), 7, np.uint8))
        monkeypatch.setattr(segment_module, "validate_segment", check_then_tamper)
        with fb.subscribe("cam") as sub:
            assert sub.format == FMT
            with sub.next(timeout=2) as frame:
                assert frame.format == FMT
                assert int(frame.to_numpy()[0, 0]) == 7


def test_private_file_replaces_a_planted_symlink_and_is_owner_only(shm_dir: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    planted = shm_dir / "camfleet.det-cpu.hb"
    planted.symlink_to(victim)
    fd = segment_module.create_private_file(planted, 4096)
    try:
        st = os.fstat(fd)
        assert st.st_size == 4096 and (st.st_mode & 0o777) == 0o600
    finally:
        os.close(fd)
    assert victim.read_bytes() == b"precious"  # neither truncated nor written through the link
    assert not planted.is_symlink() and planted.stat().st_size == 4096
    assert sorted(p.name for p in shm_dir.iterdir()) == ["camfleet.det-cpu.hb"]  # no temporary left
    planted.unlink()
