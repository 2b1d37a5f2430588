"""Binary layout of a ring segment (layout version :data:`LAYOUT_VERSION`).

A segment is one file in the shared-memory directory::

    [ header | subscriber table | slot table | lease tables ]   metadata, read-write
    [ payload (frame slots, or packet index + byte buffer) ]    page-aligned

Subscribers map the metadata read-write (they own their subscriber entry) and
the payload read-only, so a consumer can never scribble over a frame.

Locks live at virtual byte offsets far past the end of the file (the kernel
allows that); see :class:`LockMap`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np

from .errors import InvalidKey

MAGIC: Final = b"CAMFLEET"
LAYOUT_VERSION: Final = 1
MAX_SUBSCRIBERS: Final = 64
MAX_SLOTS: Final = 128
MAX_EXTRADATA: Final = 4096
PAGE: Final = 4096
HEADER_BYTES: Final = 8192

KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,63}")

KIND_FRAMES: Final = 1
KIND_PACKETS: Final = 2
KIND_NAMES: Final = {KIND_FRAMES: "frames", KIND_PACKETS: "packets"}

POLICY_DROP_OLDEST: Final = 0
POLICY_WAIT: Final = 1
POLICY_NAMES: Final = {POLICY_DROP_OLDEST: "drop_oldest", POLICY_WAIT: "wait"}

MODE_LATEST: Final = 0
MODE_SEQUENTIAL: Final = 1
MODE_NAMES: Final = {MODE_LATEST: "latest", MODE_SEQUENTIAL: "sequential"}

SUB_FREE: Final = 0
SUB_ACTIVE: Final = 1
SUB_EVICTED: Final = 2

HEADER_DTYPE: Final = np.dtype(
    [
        ("magic", "S8"),
        ("version", "<u4"),
        ("kind", "<u4"),
        ("total_bytes", "<u8"),
        ("payload_offset", "<u8"),
        ("pub_pid", "<u4"),
        ("shutdown", "<u4"),
        ("created_ns", "<i8"),
        ("key", "S64"),
        # futex words: 'word' changes on every publish, 'ack_word' on every ack
        ("word", "<u4"),
        ("ack_word", "<u4"),
        ("ack_waiting", "<u4"),  # 1 while the publisher sleeps on ack_word
        ("reg_gen", "<u4"),  # bumped on every change of the subscriber table
        ("gseq", "<u8"),
        ("published", "<u8"),
        ("last_pts", "<i8"),
        ("last_capture_ns", "<i8"),
        ("fps_milli", "<u8"),
        ("evictions", "<u8"),
        ("revocations", "<u8"),
        ("policy", "<u4"),
        ("n_slots", "<u4"),
        ("ack_timeout_ns", "<u8"),
        ("max_hold_ns", "<u8"),
        # frame rings
        ("width", "<u4"),
        ("height", "<u4"),
        ("pix_fmt", "<u4"),
        ("n_planes", "<u4"),
        ("strides", "<u4", (4,)),
        ("frame_bytes", "<u8"),
        ("slot_bytes", "<u8"),
        # packet rings
        ("codec", "S32"),
        ("time_base_num", "<u4"),
        ("time_base_den", "<u4"),
        ("extradata_len", "<u4"),
        ("extradata_seq", "<u4"),
        ("capacity", "<u8"),
        ("reserve_head", "<u8"),
        ("last_key_seq", "<u8"),
        ("extradata", "u1", (MAX_EXTRADATA,)),
    ],
    align=True,
)
assert HEADER_DTYPE.itemsize <= HEADER_BYTES

SUB_DTYPE: Final = np.dtype(
    [
        ("state", "<u4"),
        ("pid", "<u4"),
        ("mode", "<u4"),
        ("max_held", "<u4"),
        ("name", "S48"),
        ("registered_ns", "<i8"),
        ("acked", "<u8"),
        ("delivered", "<u8"),
        ("skipped", "<u8"),
        ("gaps", "<u8"),
        ("overruns", "<u8"),
        ("revocations", "<u8"),
        ("last_seq", "<u8"),
        ("last_pts", "<i8"),
    ],
    align=True,
)

#: frame slot table: four arrays of n_slots (seq u64, pts i64, capture_ns i64, flags u64)
SLOT_TABLE_ENTRY_BYTES: Final = 32

#: values of the header's ``shutdown`` word
SHUTDOWN_NONE: Final = 0
SHUTDOWN_CLOSED: Final = 1
SHUTDOWN_FORMAT_CHANGED: Final = 2

PACKET_DTYPE: Final = np.dtype(
    [
        ("seq", "<u8"),
        ("pos", "<u8"),
        ("size", "<u4"),
        ("flags", "<u4"),
        ("pts", "<i8"),
        ("dts", "<i8"),
        ("duration", "<i8"),
        ("capture_ns", "<i8"),
    ],
    align=True,
)

#: ``pts``/``dts`` value meaning "not set"
NO_PTS: Final = -(2**63)

def field_offset(dtype: np.dtype, name: str) -> int:
    """Byte offset of field ``name`` inside a structured ``dtype``."""
    fields = dtype.fields
    assert fields is not None
    return int(fields[name][1])


_LOCK_BASE: Final = 1 << 40


class LockMap:
    """Virtual byte offsets of the OFD locks of a segment.

    * ``PUBLISHER``: held exclusively by the live publisher.
    * ``REGISTRY``: mutex around subscriber registration and reclaim.
    * ``subscriber(k)``: held exclusively by the live subscriber in entry ``k``.
    * ``lease(slot, k)``: shared lock held while subscriber ``k`` leases a slot;
      the publisher takes the whole ``slot_range(slot)`` exclusively to write.
    """

    PUBLISHER: Final = _LOCK_BASE
    REGISTRY: Final = _LOCK_BASE + 1
    _SUBS: Final = _LOCK_BASE + 64
    _LEASES: Final = _LOCK_BASE + 4096

    @staticmethod
    def subscriber(k: int) -> int:
        """Offset of the liveness lock of subscriber entry ``k``."""
        return LockMap._SUBS + k

    @staticmethod
    def lease(slot: int, k: int) -> int:
        """Offset of subscriber ``k``'s lease lock on ``slot``."""
        return LockMap._LEASES + slot * MAX_SUBSCRIBERS + k

    @staticmethod
    def slot_range(slot: int) -> tuple[int, int]:
        """(start, length) of all lease locks of ``slot``."""
        return LockMap._LEASES + slot * MAX_SUBSCRIBERS, MAX_SUBSCRIBERS


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class Offsets:
    """Byte offsets of the regions of a segment with ``n_slots`` slots."""

    n_slots: int
    subs: int
    slots: int
    lease_seq: int
    lease_time: int
    payload: int

    @classmethod
    def compute(cls, kind: int, n_slots: int) -> Offsets:
        """Lay out the metadata regions for ``n_slots`` frame slots or packet entries."""
        subs = HEADER_BYTES
        slots = _align(subs + MAX_SUBSCRIBERS * SUB_DTYPE.itemsize, 64)
        entry = SLOT_TABLE_ENTRY_BYTES if kind == KIND_FRAMES else PACKET_DTYPE.itemsize
        lease_bytes = MAX_SUBSCRIBERS * n_slots * 8 if kind == KIND_FRAMES else 0
        lease_seq = _align(slots + n_slots * entry, 64)
        lease_time = lease_seq + lease_bytes
        payload = _align(lease_time + lease_bytes, PAGE)
        return cls(n_slots, subs, slots, lease_seq, lease_time, payload)


def validate_key(key: str) -> str:
    """Return ``key`` if it is a valid ring key, else raise :class:`InvalidKey`."""
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise InvalidKey(f"invalid ring key {key!r}: use 1-63 characters from [A-Za-z0-9_-]")
    return key
