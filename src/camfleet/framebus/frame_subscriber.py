"""The frame ring's reading side: :class:`FrameSubscriber` leases frames, :class:`Frame` holds one.

See :mod:`camfleet.framebus.frame_ring` for the guarantees (leases, sequence checks,
revocation, waiting) and the thread-safety contract.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
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
from .frame_slots import WRITING, FrameFlags, RingViews
from .layout import (
    KIND_FRAMES,
    MODE_NAMES,
    POLICY_WAIT,
    SHUTDOWN_FORMAT_CHANGED,
    SUB_EVICTED,
    LockMap,
)
from .registry import register, unregister
from .segment import open_segment

Mode = Literal["latest", "sequential"]

_FLAG_VALUES = tuple(FrameFlags(i) for i in range(8))  # building an IntFlag costs ~1 µs per frame


def _flags(raw: int) -> FrameFlags:
    return _FLAG_VALUES[raw] if raw < 8 else FrameFlags(raw)


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
            self._v = RingViews(self._seg)
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
                try:
                    self._check_gone()
                except PublisherGone:
                    # The ring no longer changes, so a frame that a lease lost to the publisher's
                    # last writes is still there: the last frames before a close are delivered.
                    frame = self._take()
                    if frame is not None:
                        return frame
                    raise
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
                    self, slot, target, pts, v.slot_capture[slot], _flags(v.slot_flags[slot])
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
