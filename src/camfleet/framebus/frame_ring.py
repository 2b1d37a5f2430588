"""The frame ring: one publisher, up to 64 subscribers, zero-copy numpy frames.

How it stays correct
--------------------
* **Leases.** A subscriber takes a shared OFD lock on its byte of a slot before
  it returns a frame from that slot, and keeps it until the frame is released.
  The publisher writes a slot only after taking the slot's whole lock range
  exclusively, so it never writes under a held frame and a reader never sees a
  half-written one. The kernel drops the locks of a dead process at once.
* **Sequence checks.** After taking the lease the reader checks the slot still
  carries the sequence it chose; if the publisher got there first it looks
  again. No frame from a newer "epoch" is ever returned under an old number.
* **Revocation.** A lease older than ``max_hold`` may be revoked by a publisher
  that needs the slot: it marks the slot, checks (through the kernel) that only
  expired holders remain, and overwrites. The holder's next access to the frame
  raises :class:`LeaseRevoked`.
* **Waiting.** ``next()`` sleeps on a futex word the publisher bumps after each
  frame: no polling, microsecond wake-ups. A publisher's death is noticed
  through a pidfd and wakes the sleeper as well.

Thread-safety contract
----------------------
A :class:`FramePublisher` is used from one thread at a time. A
:class:`FrameSubscriber` may be shared between threads: its methods are
serialised by an internal lock (two threads calling ``next()`` each get
different frames). A :class:`Frame` may be handed to another thread and
released from there; its numpy views are valid only while it is held.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import numpy as np

from . import _sys, watch
from .errors import (
    Evicted,
    FormatChanged,
    FrameTimeout,
    InvalidFormat,
    LeaseLimit,
    LeaseRevoked,
    Overrun,
    PublisherGone,
)
from .format import FrameFormat, PixelFormat
from .layout import (
    KIND_FRAMES,
    MAX_SLOTS,
    MODE_NAMES,
    MODE_SEQUENTIAL,
    PAGE,
    POLICY_NAMES,
    POLICY_WAIT,
    SHUTDOWN_CLOSED,
    SHUTDOWN_FORMAT_CHANGED,
    SUB_ACTIVE,
    SUB_EVICTED,
    LockMap,
    validate_key,
)
from .registry import Reaper, mark_evicted, register, unregister
from .segment import Segment, create_segment, open_segment

WRITING = 2**64 - 1  # slot sequence while the publisher writes it
_ACK_SLICE_S = 0.002  # publisher re-checks acks this often while it waits (wait policy)

class FrameFlags(enum.IntFlag):
    """Flags of a frame (the same bit values as :class:`PacketFlags`)."""

    NONE = 0
    KEY = 1
    CORRUPT = 2
    DISCONTINUITY = 4


Policy = Literal["drop_oldest", "wait"]
Mode = Literal["latest", "sequential"]


def _plane_views(buffer: Any, base: int, fmt: FrameFormat) -> tuple[np.ndarray, ...]:
    return tuple(
        np.ndarray(p.shape, np.uint8, buffer=buffer, offset=base + p.offset, strides=p.item_strides)
        for p in fmt.planes
    )


def _primary_view(buffer: Any, base: int, fmt: FrameFormat) -> np.ndarray:
    """The array a consumer usually wants: HxW(x3), or the I420/NV12 (H*3/2)xW block."""
    pix = fmt.pixel_format
    if pix in (PixelFormat.GRAY, PixelFormat.BGR24, PixelFormat.RGB24):
        return _plane_views(buffer, base, fmt)[0]
    if fmt.packed:
        return np.ndarray((fmt.height * 3 // 2, fmt.width), np.uint8, buffer=buffer, offset=base)
    return np.ndarray((fmt.frame_bytes,), np.uint8, buffer=buffer, offset=base)


def _read_format(seg: Segment) -> FrameFormat:
    h = seg.validated  # the checked copy: the format cannot change under a subscriber
    n_planes = int(h["n_planes"])
    strides = tuple(int(s) for s in h["strides"][:n_planes])
    return FrameFormat(int(h["width"]), int(h["height"]), PixelFormat(int(h["pix_fmt"])), strides)


class _RingViews:
    """Typed views of a frame segment shared by publisher and subscribers.

    Per-frame fields are memoryview casts (cheap item access); the numpy views
    serve the publisher's rarer whole-table decisions.
    """

    def __init__(self, seg: Segment) -> None:
        self.seg = seg
        self.format = _read_format(seg)
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
        self.planes = [_plane_views(seg.payload, i * self.slot_bytes, self.format) for i in range(n)]
        self.primary = [_primary_view(seg.payload, i * self.slot_bytes, self.format) for i in range(n)]


@dataclass(frozen=True)
class PublisherStats:
    """Counters of a frame publisher; times in seconds, fps in frames/s."""

    published: int
    last_seq: int
    last_pts: int
    fps: float
    evictions: int
    revocations: int
    waits: int
    wait_s: float
    subscribers: int


@dataclass(frozen=True)
class SubscriberStats:
    """Counters of one subscriber.

    ``skipped`` counts frames a ``latest`` subscriber passed over; ``gaps``
    counts frames a ``sequential`` one lost to overruns (``overruns`` events).
    """

    delivered: int
    skipped: int
    gaps: int
    overruns: int
    evictions: int
    revocations: int
    timeouts: int
    last_seq: int
    last_pts: int


class WritableFrame:
    """A slot the publisher is filling; call :meth:`FramePublisher.commit` when done.

    ``planes`` are writable numpy views straight into shared memory, so a
    decoder or converter can write the frame in place with no extra copy.
    """

    def __init__(self, slot: int, planes: tuple[np.ndarray, ...], array: np.ndarray) -> None:
        self.slot = slot
        self.planes = planes
        self.array = array


class FramePublisher:
    """Owner of a frame ring: creates it, writes frames, removes it on close.

    Args:
        key: ring name, ``[A-Za-z0-9_-]{1,63}``.
        fmt: geometry of the frames.
        slots: number of frame slots (2..128). Each subscriber's ``max_held``
            is reserved from it, plus one slot the publisher can always write.
        policy: ``"drop_oldest"`` never blocks; ``"wait"`` waits up to
            ``ack_timeout`` seconds for ``sequential`` subscribers to take a
            frame before overwriting it, then evicts the slowest.
        ack_timeout: seconds, for the ``wait`` policy.
        max_hold: seconds a subscriber may hold a frame before its lease can be
            revoked when the publisher needs the slot.

    Example:
        >>> fmt = FrameFormat(64, 48, "gray")
        >>> with FramePublisher("doc-example", fmt, slots=4) as pub:
        ...     seq = pub.publish(np.zeros((48, 64), np.uint8), pts=0)
        >>> seq
        1
    """

    def __init__(
        self,
        key: str,
        fmt: FrameFormat,
        *,
        slots: int = 8,
        policy: Policy = "drop_oldest",
        ack_timeout: float = 0.2,
        max_hold: float = 2.0,
    ) -> None:
        validate_key(key)
        if not 2 <= slots <= MAX_SLOTS:
            raise InvalidFormat(f"ring {key!r}: slots must be 2..{MAX_SLOTS}, got {slots}")
        policies = {v: k for k, v in POLICY_NAMES.items()}
        if policy not in policies:
            raise InvalidFormat(f"ring {key!r}: unknown policy {policy!r}; use drop_oldest or wait")
        if ack_timeout <= 0 or max_hold <= 0:
            raise InvalidFormat(f"ring {key!r}: ack_timeout and max_hold must be > 0 seconds")
        self.key = key
        self.format = fmt
        self.policy: Policy = policy
        self._wait_policy = policies[policy] == POLICY_WAIT
        self._ack_timeout = ack_timeout
        self._max_hold_ns = int(max_hold * 1e9)
        slot_bytes = (fmt.frame_bytes + PAGE - 1) // PAGE * PAGE

        def init(h: np.ndarray) -> None:
            h["policy"] = policies[policy]
            h["ack_timeout_ns"] = int(ack_timeout * 1e9)
            h["max_hold_ns"] = self._max_hold_ns
            h["width"] = fmt.width
            h["height"] = fmt.height
            h["pix_fmt"] = int(fmt.pixel_format)
            h["n_planes"] = len(fmt.strides)
            h["strides"][: len(fmt.strides)] = fmt.strides
            h["frame_bytes"] = fmt.frame_bytes
            h["slot_bytes"] = slot_bytes

        self._seg = create_segment(key, KIND_FRAMES, slots, slots * slot_bytes, init)
        self._v = _RingViews(self._seg)
        self._published = self._seg.u64("published")
        self._last_pts = self._seg.i64("last_pts")
        self._last_capture = self._seg.i64("last_capture_ns")
        self._fps_milli = self._seg.u64("fps_milli")
        self._evictions = self._seg.u64("evictions")
        self._revocations = self._seg.u64("revocations")
        self._pending: WritableFrame | None = None
        self._forced = False
        self._last_commit_ns = 0
        self._fps = 0.0
        self._waits = 0
        self._wait_ns = 0
        self._reaper = Reaper(self._seg)
        self._reg_gen = self._seg.u32("reg_gen")
        self._seq_subs: list[memoryview[int]] = []
        self._seq_subs_gen = -1
        self._slot_locks = [_sys.LockRequest(*LockMap.slot_range(i)) for i in range(slots)]

    # ---- writing ------------------------------------------------------
    def begin(self) -> WritableFrame:
        """Reserve the oldest slot nobody holds and return writable views of it.

        Under the ``wait`` policy this may block up to ``ack_timeout`` and then
        evict the slowest ``sequential`` subscriber.
        """
        if self._pending is not None:
            raise RuntimeError(f"ring {self.key!r}: begin() called twice without commit()")
        slot = self._reserve_slot()
        self._v.slot_seq[slot] = WRITING
        frame = WritableFrame(slot, self._v.planes[slot], self._v.primary[slot])
        self._pending = frame
        return frame

    def commit(
        self, *, pts: int = 0, capture_ns: int | None = None, flags: FrameFlags = FrameFlags.NONE
    ) -> int:
        """Publish the frame begun with :meth:`begin`; returns its sequence number.

        ``pts`` is in the stream's time base; ``capture_ns`` is wall-clock
        nanoseconds since the epoch (now if None); ``flags`` mark keyframes,
        frames decoded from corrupt data, and the first frame after a gap.
        """
        frame = self._pending
        if frame is None:
            raise RuntimeError(f"ring {self.key!r}: commit() without begin()")
        self._pending = None
        v = self._v
        now_ns = time.time_ns()
        seq = int(v.gseq[0]) + 1
        slot = frame.slot
        v.slot_pts[slot] = pts
        v.slot_capture[slot] = now_ns if capture_ns is None else capture_ns
        v.slot_flags[slot] = int(flags)
        v.slot_seq[slot] = seq
        v.gseq[0] = seq
        if not self._forced:
            _sys.try_request(self._seg.fd, self._slot_locks[slot].unlock)
        self._published[0] = seq
        self._last_pts[0] = pts
        self._last_capture[0] = v.slot_capture[slot]
        v.word[0] = (int(v.word[0]) + 1) & 0xFFFFFFFF
        _sys.futex_wake(v.word_addr)
        mono = time.monotonic_ns()
        if self._last_commit_ns:
            dt = (mono - self._last_commit_ns) / 1e9
            if dt > 0:
                self._fps = 1 / dt if self._fps == 0 else 0.9 * self._fps + 0.1 / dt
                self._fps_milli[0] = int(self._fps * 1000)
        self._last_commit_ns = mono
        return seq

    def publish(
        self,
        data: np.ndarray | Sequence[np.ndarray] | bytes | memoryview,
        *,
        pts: int = 0,
        capture_ns: int | None = None,
        flags: FrameFlags = FrameFlags.NONE,
    ) -> int:
        """Copy one frame into the ring and publish it; returns its sequence number.

        ``data`` is the primary array (HxW, HxWx3, or the (H*3/2)xW I420/NV12
        block), a sequence of planes, or the raw frame bytes.
        """
        frame = self.begin()
        try:
            self._copy_in(frame, data)
        except BaseException:
            self._abort(frame)
            raise
        return self.commit(pts=pts, capture_ns=capture_ns, flags=flags)

    def _copy_in(
        self, frame: WritableFrame, data: np.ndarray | Sequence[np.ndarray] | bytes | memoryview
    ) -> None:
        if isinstance(data, np.ndarray):
            if data.dtype != np.uint8:
                raise InvalidFormat(f"ring {self.key!r}: frames are uint8, got {data.dtype}")
            if data.shape != frame.array.shape:
                raise InvalidFormat(
                    f"ring {self.key!r}: frame shape {data.shape} does not match "
                    f"{frame.array.shape} ({self.format.describe()})"
                )
            np.copyto(frame.array, data, casting="no")
        elif isinstance(data, bytes | bytearray | memoryview):
            raw = np.frombuffer(data, np.uint8)
            if raw.size != self.format.frame_bytes:
                raise InvalidFormat(
                    f"ring {self.key!r}: {raw.size} bytes given, a frame is {self.format.frame_bytes}"
                )
            dst = np.ndarray((raw.size,), np.uint8, buffer=self._seg.payload,
                             offset=frame.slot * self._v.slot_bytes)
            dst[:] = raw
        else:
            planes = list(data)
            if len(planes) != len(frame.planes):
                raise InvalidFormat(
                    f"ring {self.key!r}: {len(planes)} plane(s) given, "
                    f"{self.format.pixel_format.ffmpeg_name} has {len(frame.planes)}"
                )
            for dst, src in zip(frame.planes, planes, strict=True):
                if src.shape != dst.shape or src.dtype != np.uint8:
                    raise InvalidFormat(
                        f"ring {self.key!r}: plane {src.shape} {src.dtype} does not match "
                        f"{dst.shape} uint8"
                    )
                np.copyto(dst, src, casting="no")

    def _abort(self, frame: WritableFrame) -> None:
        self._pending = None
        self._v.slot_seq[frame.slot] = 0
        if not self._forced:
            start, length = LockMap.slot_range(frame.slot)
            _sys.unlock(self._seg.fd, start, length)

    # ---- slot choice --------------------------------------------------
    def _consumed_floor(self) -> int | None:
        """Lowest sequence every live ``sequential`` subscriber has taken, or None."""
        gen = self._reg_gen[0]
        if gen != self._seq_subs_gen:
            # the table changed: find the sequential subscribers again (rare)
            subs = self._seg.subs
            mask = (subs["state"] == SUB_ACTIVE) & (subs["mode"] == MODE_SEQUENTIAL)
            self._seq_subs = [self._seg.sub_stats(k) for k in np.flatnonzero(mask).tolist()]
            self._seq_subs_gen = gen
        if not self._seq_subs:
            return None
        return min(c[0] for c in self._seq_subs)  # c[0]: acked

    def _reserve_slot(self) -> int:
        v = self._v
        deadline: float | None = None
        while True:
            ack_word = int(v.ack_word[0])
            floor = self._consumed_floor() if self._wait_policy else None
            slot = self._try_slots(floor)
            if slot is not None:
                return slot
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._ack_timeout
                self._waits += 1
            if now >= deadline:
                self.reclaim()  # a dead subscriber is not a laggard
                self._evict_laggards(self._consumed_floor())
                deadline = None
                continue
            t0 = time.monotonic_ns()
            # Subscribers wake us only while ack_waiting is set; the short
            # slice bounds the cost of a wake-up lost to that flag's race.
            v.ack_waiting[0] = 1
            if int(v.ack_word[0]) == ack_word:
                _sys.futex_wait(v.ack_addr, ack_word, min(deadline - now, _ACK_SLICE_S))
            v.ack_waiting[0] = 0
            self._wait_ns += time.monotonic_ns() - t0

    def _try_slots(self, floor: int | None) -> int | None:
        fd = self._seg.fd
        seqs = self._v.slot_seq.tolist()
        for slot in sorted(range(len(seqs)), key=seqs.__getitem__):
            seq = seqs[slot]
            if floor is not None and seq > floor:
                break  # every later slot holds a frame a sequential subscriber still needs
            if _sys.try_request(fd, self._slot_locks[slot].exclusive):
                self._forced = False
                return int(slot)
            if self._revoke_expired(slot, seq):
                self._forced = True
                return int(slot)
        return None

    def _revoke_expired(self, slot: int, seq: int) -> bool:
        """Revoke the leases on ``slot`` if all of them are older than ``max_hold``."""
        v = self._v
        times = v.lease_time[:, slot]
        now = time.monotonic_ns()
        live = times[times != 0]
        if live.size == 0 or int(live.max()) > now - self._max_hold_ns:
            return False
        # Mark first, then ask the kernel who holds the slot: a reader locking
        # after this point sees WRITING and backs off; one locking before shows
        # up among the holders and must itself be expired.
        v.slot_seq[slot] = WRITING
        start, length = LockMap.slot_range(slot)
        holders = [off - start for off in _sys.lock_holders(self._seg.fd, start, length)]
        for k in holders:
            t = int(v.lease_time[k, slot])
            if t == 0 or t > now - self._max_hold_ns:
                v.slot_seq[slot] = seq
                return False
        for k in holders:
            # lease_seq doubles as "not yet counted": a lease revoked once and
            # still held is not counted again when the slot is reused.
            if int(v.lease_seq[k, slot]) != 0:
                v.lease_seq[k, slot] = 0
                self._seg.subs["revocations"][k] += 1
                self._revocations[0] += 1
        return True

    def _evict_laggards(self, floor: int | None) -> None:
        """Evict the ``sequential`` subscribers stuck at ``floor`` (``wait`` policy)."""
        subs = self._seg.subs
        with self._reaper.registry():
            mask = (subs["state"] == SUB_ACTIVE) & (subs["mode"] == MODE_SEQUENTIAL)
            if floor is not None:
                mask &= subs["acked"] <= floor
            if not mask.any():
                return  # nothing evictable (all slots leased): keep waiting
            for k in np.flatnonzero(mask).tolist():
                mark_evicted(self._seg, k)
                self._evictions[0] += 1
        self._v.word[0] = (int(self._v.word[0]) + 1) & 0xFFFFFFFF
        _sys.futex_wake(self._v.word_addr)

    def reclaim(self) -> list[int]:
        """Free the entries of dead subscribers now; returns their indices."""
        return self._reaper.reclaim()

    # ---- info ---------------------------------------------------------
    @property
    def path(self) -> str:
        """Filesystem path of the ring's segment."""
        return str(self._seg.path)

    def stats(self) -> PublisherStats:
        """A snapshot of the publisher's counters."""
        subs = self._seg.subs
        return PublisherStats(
            published=int(self._published[0]),
            last_seq=int(self._v.gseq[0]),
            last_pts=int(self._last_pts[0]),
            fps=self._fps,
            evictions=int(self._evictions[0]),
            revocations=int(self._revocations[0]),
            waits=self._waits,
            wait_s=self._wait_ns / 1e9,
            subscribers=int((subs["state"] != 0).sum()),
        )

    def close(self, *, format_changed: bool = False) -> None:
        """Tell subscribers the ring is gone, remove the segment and release everything.

        ``format_changed`` tells them the ring is being re-created with another
        format: they get :class:`FormatChanged` and should subscribe again.
        """
        if self._reaper.stopped:
            return
        self._reaper.stop()
        v = self._v
        v.shutdown[0] = SHUTDOWN_FORMAT_CHANGED if format_changed else SHUTDOWN_CLOSED
        v.word[0] = (int(v.word[0]) + 1) & 0xFFFFFFFF
        _sys.futex_wake(v.word_addr)
        del self._v, self._published, self._last_pts, self._last_capture
        del self._fps_milli, self._evictions, self._revocations, self._pending
        self._seg.close(unlink=True)

    def __enter__(self) -> FramePublisher:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class Frame:
    """A frame leased from a ring: zero-copy, read-only numpy views of shared memory.

    Release it (or use it as a context manager) when done; the publisher never
    overwrites it before then unless it is held past ``max_hold``, in which case
    :meth:`check` and every accessor raise :class:`LeaseRevoked`.

    Attributes:
        seq: ring sequence number (1, 2, ...).
        pts: presentation timestamp in the stream's time base.
        capture_ns: wall-clock capture time, ns since the epoch.
        flags: :class:`FrameFlags` (keyframe, corrupt, discontinuity).
        format: the frame geometry.
    """

    __slots__ = ("_owner", "_released", "capture_ns", "flags", "format", "pts", "seq", "slot")

    def __init__(
        self,
        owner: FrameSubscriber,
        slot: int,
        seq: int,
        pts: int,
        capture_ns: int,
        flags: FrameFlags = FrameFlags.NONE,
    ) -> None:
        self._owner = owner
        self.flags = flags
        self.slot = slot
        self.seq = seq
        self.pts = pts
        self.capture_ns = capture_ns
        self.format = owner.format
        self._released = False

    def check(self) -> None:
        """Raise :class:`LeaseRevoked` if the frame's memory was taken back."""
        if self._released:
            raise LeaseRevoked(f"frame {self.seq} of ring {self._owner.key!r} was released")
        if int(self._owner._v.slot_seq[self.slot]) != self.seq:
            raise LeaseRevoked(
                f"frame {self.seq} of ring {self._owner.key!r} was held longer than max_hold "
                "and its slot was reclaimed by the publisher"
            )

    @property
    def planes(self) -> tuple[np.ndarray, ...]:
        """Read-only views of each plane (Y, U, V / Y, UV / one packed plane)."""
        self.check()
        return self._owner._v.planes[self.slot]

    @property
    def array(self) -> np.ndarray:
        """The primary read-only view: HxW gray, HxWx3 RGB/BGR, (H*3/2)xW I420/NV12."""
        self.check()
        return self._owner._v.primary[self.slot]

    def to_numpy(self) -> np.ndarray:
        """A private copy of :attr:`array` that outlives the lease."""
        out = self.array.copy()
        self.check()  # the copy is only good if the lease held throughout
        return out

    def __dlpack__(self, **kwargs: Any) -> Any:
        """DLPack export of :attr:`array` (read-only, CPU)."""
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> tuple[int, int]:
        """DLPack device: CPU."""
        return (1, 0)

    def release(self) -> None:
        """Give the frame back; safe to call more than once."""
        if not self._released:
            self._released = True
            self._owner._release(self.slot)

    def __enter__(self) -> Frame:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"Frame(seq={self.seq}, pts={self.pts}, {self.format.describe()})"


class FrameSubscriber:
    """A registered reader of a frame ring; see :func:`camfleet.framebus.subscribe`."""

    def __init__(
        self,
        key: str,
        *,
        mode: Mode = "latest",
        name: str | None = None,
        max_held: int = 1,
        connect_timeout: float = 0.0,
    ) -> None:
        modes = {v: k for k, v in MODE_NAMES.items()}
        if mode not in modes:
            raise InvalidFormat(f"ring {key!r}: unknown mode {mode!r}; use latest or sequential")
        if max_held < 1:
            raise InvalidFormat(f"ring {key!r}: max_held must be >= 1")
        self.key = key
        self.mode: Mode = mode
        self.name = name or f"sub-{os.getpid()}-{id(self) & 0xFFFF:x}"
        self.max_held = max_held
        self._seg = open_segment(key, KIND_FRAMES, connect_timeout)
        try:
            self._v = _RingViews(self._seg)
            # a new subscriber starts at the newest frame already published
            start = max(int(self._v.gseq[0]) - 1, 0)
            self._index = register(self._seg, self.name, modes[mode], max_held, acked=start)
        except BaseException:
            self._seg.close()
            raise
        k, n = self._index, self._v.n_slots
        self.format = self._v.format
        self._sequential = mode == "sequential"
        self._notify = self._sequential and int(self._seg.header["policy"]) == POLICY_WAIT
        self._fd = self._seg.fd
        self._state = self._seg.sub_state(k)
        self._counters = self._seg.sub_stats(k)  # acked..last_pts, in shared memory
        self._lease_seq = self._seg.view(self._seg.offsets.lease_seq + k * n * 8, n, "q")
        self._lease_time = self._seg.view(self._seg.offsets.lease_time + k * n * 8, n, "q")
        self._requests = [_sys.LockRequest(LockMap.lease(slot, k)) for slot in range(n)]
        self._held: dict[int, int] = {}  # slot -> lease count
        self._nheld = 0
        self._lock = threading.RLock()
        self._gone = False
        self._closed = False
        self._timeouts = 0
        self._evictions = 0
        self._last = start
        self._pid = int(self._seg.header["pub_pid"])
        self._watch = watch.watch_pid(self._pid, self._on_publisher_exit)
        if self._watch is not None and not self._seg.publisher_alive():
            self._gone = True

    # ---- state --------------------------------------------------------
    def _on_publisher_exit(self) -> None:
        self._gone = True
        if not self._closed:
            _sys.futex_wake(self._v.word_addr)

    def _check_evicted(self) -> None:
        if self._closed:
            raise PublisherGone(f"ring {self.key!r}: subscriber {self.name!r} is closed")
        if self._state[0] == SUB_EVICTED:
            self._evictions += 1
            self.close()
            raise Evicted(
                f"ring {self.key!r}: subscriber {self.name!r} was evicted for falling more than "
                "ack_timeout behind (wait policy); subscribe again to continue"
            )

    def _check_gone(self) -> None:
        if self._v.shutdown[0] == SHUTDOWN_FORMAT_CHANGED:
            self._gone = True
            raise FormatChanged(
                f"ring {self.key!r}: the publisher re-creates the ring with a new frame format "
                f"(was {self.format.describe()}); subscribe again"
            )
        if self._gone or self._v.shutdown[0] or (
            self._watch is None and not self._seg.publisher_alive()
        ):
            self._gone = True
            raise PublisherGone(
                f"ring {self.key!r}: publisher (pid {self._pid}) is gone; subscribe again to "
                "reconnect when it is back"
            )

    # ---- reading ------------------------------------------------------
    def next(self, timeout: float | None = None) -> Frame:
        """Return the next frame, waiting up to ``timeout`` seconds (None: forever).

        ``latest`` mode returns the newest frame not yet seen; ``sequential``
        returns every frame in order. Raises :class:`FrameTimeout`,
        :class:`Overrun` (sequential, frames lost; the next call resumes at the
        oldest frame still in the ring), :class:`PublisherGone`,
        :class:`Evicted` or :class:`LeaseLimit`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        v = self._v
        while True:
            # The lock is not held while sleeping, so other threads can release
            # frames (which the publisher may be waiting for) meanwhile.
            with self._lock:
                if self._nheld >= self.max_held:
                    raise LeaseLimit(
                        f"ring {self.key!r}: {self.name!r} already holds {self.max_held} "
                        "frame(s) (max_held); release one first"
                    )
                self._check_evicted()
                word = v.word[0]
                frame = self._take()
                if frame is not None:
                    return frame
                self._check_gone()
            if not _sys.wait_for_publish(v.word_addr, word, deadline, watched=self._watch is not None):
                self._timeouts += 1
                raise FrameTimeout(f"ring {self.key!r}: no new frame within {timeout:g} s")

    def _take(self) -> Frame | None:
        v = self._v
        gseq = v.gseq[0]
        last = self._last
        if gseq <= last:
            return None
        target = last + 1 if self._sequential else gseq
        seqs = v.slot_seq.tolist()
        if target in seqs:
            slot = seqs.index(target)
            if self._lease(slot, target):
                c = self._counters
                if self._sequential:
                    c[0] = target  # acked
                else:
                    c[2] += target - last - 1  # skipped
                c[1] += 1  # delivered
                c[6] = target
                pts = v.slot_pts[slot]
                c[7] = pts
                self._last = target
                if self._notify and v.ack_waiting[0]:
                    self._wake_publisher()
                return Frame(
                    self, slot, target, pts, v.slot_capture[slot], FrameFlags(v.slot_flags[slot])
                )
        if not self._sequential:
            return None  # overwritten meanwhile; the caller looks again
        newer = [q for q in v.slot_seq.tolist() if last < q < WRITING]
        oldest = min(newer) if newer else v.gseq[0]
        if oldest <= target:
            return None  # being written right now: wait for the publish
        lost = oldest - target
        self._last = oldest - 1
        c = self._counters
        c[0] = oldest - 1
        c[3] += lost
        c[4] += 1
        raise Overrun(self.key, lost, oldest)

    def _lease(self, slot: int, seq: int) -> bool:
        count = self._held.get(slot, 0)
        if count == 0 and not _sys.try_request(self._fd, self._requests[slot].shared):
            return False  # the publisher is writing this slot
        if self._v.slot_seq[slot] != seq:
            if count == 0:
                _sys.try_request(self._fd, self._requests[slot].unlock)
            return False
        self._held[slot] = count + 1
        self._nheld += 1
        self._lease_seq[slot] = seq
        self._lease_time[slot] = time.monotonic_ns()
        return True

    def _release(self, slot: int) -> None:
        with self._lock:
            count = self._held.get(slot, 0)
            if count == 0 or self._closed:
                return
            self._nheld -= 1
            if count > 1:
                self._held[slot] = count - 1
                return
            del self._held[slot]
            self._lease_time[slot] = 0
            self._lease_seq[slot] = 0
            _sys.try_request(self._fd, self._requests[slot].unlock)
            if self._notify and self._v.ack_waiting[0]:
                self._wake_publisher()

    def _wake_publisher(self) -> None:
        v = self._v
        v.ack_word[0] = (v.ack_word[0] + 1) & 0xFFFFFFFF
        _sys.futex_wake(v.ack_addr)

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames forever, releasing each when the loop moves on."""
        while True:
            frame = self.next()
            try:
                yield frame
            finally:
                frame.release()

    # ---- info & lifetime ---------------------------------------------
    def stats(self) -> SubscriberStats:
        """A snapshot of this subscriber's counters."""
        c = self._counters
        revocations = self._revocations if self._closed else int(
            self._seg.subs["revocations"][self._index]
        )
        return SubscriberStats(
            delivered=int(c[1]),
            skipped=int(c[2]),
            gaps=int(c[3]),
            overruns=int(c[4]),
            evictions=self._evictions,
            revocations=revocations,
            timeouts=self._timeouts,
            last_seq=int(c[6]),
            last_pts=int(c[7]),
        )

    @property
    def held(self) -> int:
        """Number of frames currently leased by this subscriber."""
        return self._nheld

    def close(self) -> None:
        """Release all leases, unregister and unmap (views still held stay valid memory)."""
        with self._lock:
            if self._closed:
                return
            watch.unwatch(self._watch)
            self._revocations = int(self._seg.subs["revocations"][self._index])
            self._counters = memoryview(bytearray(self._counters.tobytes())).cast("q")
            self._closed = True
            for slot in list(self._held):
                _sys.try_request(self._fd, self._requests[slot].unlock)
            self._held.clear()
            self._nheld = 0
            if self._state[0] != 0 and not self._seg.replaced:
                unregister(self._seg, self._index)
            del self._lease_seq, self._lease_time, self._state
            self._seg.close()

    def __enter__(self) -> FrameSubscriber:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()
