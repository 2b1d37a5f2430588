"""The frame ring's shared memory as typed views, and the slot/lease helpers both sides use.

:class:`RingViews` maps a frame segment's slot table, lease table, futex words and
frame payloads; :func:`revoke_expired_leases` is the lease rule a publisher applies
when it needs a slot that a subscriber held past ``max_hold``. See
:mod:`camfleet.framebus.frame_ring` for how the pieces keep the ring correct.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from . import _sys
from .format import FrameFormat, PixelFormat
from .layout import LockMap
from .segment import Segment

WRITING = 2**64 - 1
"""Slot sequence while the publisher writes the slot (readers back off)."""


class FrameFlags(enum.IntFlag):
    """Flags of a frame (the same bit values as :class:`PacketFlags`)."""

    NONE = 0
    KEY = 1
    CORRUPT = 2
    DISCONTINUITY = 4


def plane_views(buffer: Any, base: int, fmt: FrameFormat) -> tuple[np.ndarray, ...]:
    """Numpy views of each plane of the frame at byte ``base`` of ``buffer``."""
    return tuple(
        np.ndarray(p.shape, np.uint8, buffer=buffer, offset=base + p.offset, strides=p.item_strides)
        for p in fmt.planes
    )


def primary_view(buffer: Any, base: int, fmt: FrameFormat) -> np.ndarray:
    """The array a consumer usually wants: HxW(x3), or the I420/NV12 (H*3/2)xW block."""
    pix = fmt.pixel_format
    if pix in (PixelFormat.GRAY, PixelFormat.BGR24, PixelFormat.RGB24):
        return plane_views(buffer, base, fmt)[0]
    if fmt.packed:
        return np.ndarray((fmt.height * 3 // 2, fmt.width), np.uint8, buffer=buffer, offset=base)
    return np.ndarray((fmt.frame_bytes,), np.uint8, buffer=buffer, offset=base)


def read_format(seg: Segment) -> FrameFormat:
    """The frame geometry recorded in a frame segment's header."""
    h = seg.validated  # the checked copy: the format cannot change under a subscriber
    n_planes = int(h["n_planes"])
    strides = tuple(int(s) for s in h["strides"][:n_planes])
    return FrameFormat(int(h["width"]), int(h["height"]), PixelFormat(int(h["pix_fmt"])), strides)


class RingViews:
    """Typed views of a frame segment shared by publisher and subscribers.

    Per-frame fields are memoryview casts (cheap item access); the numpy views
    serve the publisher's rarer whole-table decisions.
    """

    def __init__(self, seg: Segment) -> None:
        self.seg = seg
        self.format = read_format(seg)
        n = seg.offsets.n_slots
        self.n_slots = n
        self.slot_bytes = int(seg.validated["slot_bytes"])
        base = seg.offsets.slots
        self.slot_seq = seg.view(base, n, "Q")
        self.slot_pts = seg.view(base + 8 * n, n, "q")
        self.slot_capture = seg.view(base + 16 * n, n, "q")
        self.slot_flags = seg.view(base + 24 * n, n, "Q")
        self.slot_seq_np = np.ndarray((n,), np.uint64, buffer=seg.meta, offset=base)
        self.lease_seq = np.ndarray((64, n), np.int64, buffer=seg.meta, offset=seg.offsets.lease_seq)
        self.lease_time = np.ndarray((64, n), np.int64, buffer=seg.meta, offset=seg.offsets.lease_time)
        self.gseq = seg.u64("gseq")
        self.word = seg.u32("word")
        self.ack_word = seg.u32("ack_word")
        self.ack_waiting = seg.u32("ack_waiting")
        self.shutdown = seg.u32("shutdown")
        self.word_addr = seg.address("word")
        self.ack_addr = seg.address("ack_word")
        self.planes = [plane_views(seg.payload, i * self.slot_bytes, self.format) for i in range(n)]
        self.primary = [primary_view(seg.payload, i * self.slot_bytes, self.format) for i in range(n)]

    def raw(self, slot: int) -> np.ndarray:
        """The slot's frame bytes as one flat uint8 view (for copying a raw frame in)."""
        return np.ndarray((self.format.frame_bytes,), np.uint8, buffer=self.seg.payload,
                          offset=slot * self.slot_bytes)

    def bump_word(self) -> None:
        """Wake every subscriber sleeping in ``next()`` (a frame, an eviction or a shutdown)."""
        self.word[0] = (int(self.word[0]) + 1) & 0xFFFFFFFF
        _sys.futex_wake(self.word_addr)


def revoke_expired_leases(v: RingViews, slot: int, seq: int, now_ns: int, max_hold_ns: int) -> int | None:
    """Revoke the leases on ``slot`` (carrying ``seq``) if all of them are older than ``max_hold_ns``.

    Returns None when a lease is still valid (the slot stays as it was), else how many
    leases were newly revoked (each also counted in the holder's ``revocations``);
    on success the slot is marked :data:`WRITING` and the caller may overwrite it.
    """
    times = v.lease_time[:, slot]
    live = times[times != 0]
    if live.size == 0 or int(live.max()) > now_ns - max_hold_ns:
        return None
    # Mark first, then ask the kernel who holds the slot: a reader locking
    # after this point sees WRITING and backs off; one locking before shows
    # up among the holders and must itself be expired.
    v.slot_seq[slot] = WRITING
    start, length = LockMap.slot_range(slot)
    holders = [off - start for off in _sys.lock_holders(v.seg.fd, start, length)]
    for k in holders:
        t = int(v.lease_time[k, slot])
        if t == 0 or t > now_ns - max_hold_ns:
            v.slot_seq[slot] = seq
            return None
    revoked = 0
    for k in holders:
        # lease_seq doubles as "not yet counted": a lease revoked once and
        # still held is not counted again when the slot is reused.
        if int(v.lease_seq[k, slot]) != 0:
            v.lease_seq[k, slot] = 0
            v.seg.subs["revocations"][k] += 1
            revoked += 1
    return revoked
