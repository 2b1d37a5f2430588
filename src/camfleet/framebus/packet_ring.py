"""The packet ring: encoded packets (variable length) for recorders and remuxers.

Layout: an index of ``index_size`` entries ``{seq, pos, size, flags, pts, dts,
duration, capture_ns}`` and a wrap-around byte buffer of ``capacity`` bytes.
``pos`` is an absolute byte position (it only grows); a packet lives at
``pos % capacity``.

The publisher never waits for readers (packets are cheap to lose and a
recorder re-anchors at a keyframe). Readers copy each payload out and then
validate it twice: the index entry must still carry the sequence number, and
the publisher's *reserve head* -- advanced before any byte is written -- must
not have moved more than ``capacity`` past the packet's start. The second check
catches payload bytes overwritten under an index entry that itself survived.

After an overrun a reader resumes at the newest keyframe (or waits for the next
one) and flags the first packet it returns with ``DISCONTINUITY`` and the number
of packets lost, once.

Thread-safety: a :class:`PacketPublisher` is used from one thread; a
:class:`PacketSubscriber` serialises its methods with an internal lock.
"""

from __future__ import annotations

import enum
import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from . import _sys, watch
from .errors import FrameTimeout, InvalidFormat, PublisherGone
from .layout import (
    KIND_PACKETS,
    MAX_EXTRADATA,
    MODE_SEQUENTIAL,
    NO_PTS,
    PACKET_DTYPE,
    PAGE,
    validate_key,
)
from .registry import Reaper, register, unregister
from .segment import Segment, create_segment, open_segment
from .sizes import PACKET_CAPACITY, PACKET_INDEX_SIZE

_WRITING = np.uint64(2**64 - 1)


class PacketFlags(enum.IntFlag):
    """Flags of an encoded packet."""

    NONE = 0
    KEY = 1
    CORRUPT = 2
    DISCONTINUITY = 4


@dataclass(frozen=True)
class Packet:
    """One encoded packet copied out of the ring.

    ``pts``/``dts``/``duration`` are in the ring's ``time_base`` (None when the
    stream gave none); ``capture_ns`` is wall-clock ns since the epoch; ``lost``
    is the number of packets skipped just before this one (with
    ``DISCONTINUITY`` set), else 0.
    """

    seq: int
    data: bytes
    pts: int | None
    dts: int | None
    duration: int
    flags: PacketFlags
    capture_ns: int
    lost: int = 0

    @property
    def is_key(self) -> bool:
        """True for a keyframe (a decoder can start here)."""
        return bool(self.flags & PacketFlags.KEY)


class _IndexViews:
    def __init__(self, seg: Segment) -> None:
        n = seg.offsets.n_slots
        index = np.ndarray((n,), PACKET_DTYPE, buffer=seg.meta, offset=seg.offsets.slots)
        self.n = n
        self.seq = index["seq"]
        self.pos = index["pos"]
        self.size = index["size"]
        self.flags = index["flags"]
        self.pts = index["pts"]
        self.dts = index["dts"]
        self.duration = index["duration"]
        self.capture = index["capture_ns"]
        self.gseq = seg.u64("gseq")
        self.reserve = seg.u64("reserve_head")
        self.last_key = seg.u64("last_key_seq")
        self.word = seg.u32("word")
        self.word_addr = seg.address("word")
        self.shutdown = seg.u32("shutdown")
        self.capacity = int(seg.validated["capacity"])


def _stream_fields(h: np.ndarray, codec: str, extradata: bytes, time_base: tuple[int, int]) -> None:
    if len(extradata) > MAX_EXTRADATA:
        raise InvalidFormat(f"extradata is {len(extradata)} bytes, at most {MAX_EXTRADATA}")
    if len(codec.encode()) > 31:
        raise InvalidFormat(f"codec name {codec!r} is longer than 31 bytes")
    num, den = time_base
    if num <= 0 or den <= 0:
        raise InvalidFormat(f"time base {num}/{den} must be positive")
    h["codec"] = codec.encode()
    h["time_base_num"] = num
    h["time_base_den"] = den
    h["extradata_len"] = len(extradata)
    h["extradata"][: len(extradata)] = np.frombuffer(extradata, np.uint8)


class PacketPublisher:
    """Owner of a packet ring.

    Args:
        key: ring name (the frame ring of the same camera may share it).
        codec: codec name as FFmpeg knows it, e.g. ``"h264"``.
        extradata: codec extradata (SPS/PPS...), at most 4096 bytes.
        time_base: (num, den) of pts/dts/duration.
        capacity: payload buffer size in bytes; a packet may use a quarter of it.
        index_size: packets addressable at once.

    Example:
        >>> with PacketPublisher("doc-packets", "h264") as pub:
        ...     pub.publish(b"\\x00\\x00\\x00\\x01\\x65", pts=0, key=True)
        1
    """

    def __init__(
        self,
        key: str,
        codec: str = "h264",
        *,
        extradata: bytes = b"",
        time_base: tuple[int, int] = (1, 90000),
        capacity: int = PACKET_CAPACITY,
        index_size: int = PACKET_INDEX_SIZE,
    ) -> None:
        validate_key(key)
        if not 64 <= index_size <= 65536:
            raise InvalidFormat(f"ring {key!r}: index_size must be 64..65536, got {index_size}")
        if capacity < 64 * 1024:
            raise InvalidFormat(f"ring {key!r}: capacity must be at least 64 KiB, got {capacity}")
        capacity = (capacity + PAGE - 1) // PAGE * PAGE
        self.key = key
        self.capacity = capacity
        self.max_packet = capacity // 4

        def init(h: np.ndarray) -> None:
            _stream_fields(h, codec, extradata, time_base)
            h["capacity"] = capacity

        self._seg = create_segment(key, KIND_PACKETS, index_size, capacity, init)
        self._v = _IndexViews(self._seg)
        self._buf = np.ndarray((capacity,), np.uint8, buffer=self._seg.payload)
        self._published = self._seg.u64("published")
        self._last_pts = self._seg.i64("last_pts")
        self._reaper = Reaper(self._seg)

    def set_stream(self, codec: str, extradata: bytes, time_base: tuple[int, int]) -> None:
        """Change codec parameters mid-stream (e.g. new SPS/PPS after a camera switch)."""
        h = self._seg.header
        _stream_fields(h, codec, extradata, time_base)
        h["extradata_seq"] = int(h["extradata_seq"]) + 1

    def publish(
        self,
        data: bytes | bytearray | memoryview,
        *,
        pts: int | None = None,
        dts: int | None = None,
        duration: int = 0,
        key: bool = False,
        corrupt: bool = False,
        discontinuity: bool = False,
        capture_ns: int | None = None,
    ) -> int:
        """Append one packet; returns its sequence number. Never blocks."""
        size = len(data)
        if size > self.max_packet:
            raise InvalidFormat(
                f"ring {self.key!r}: packet of {size} bytes exceeds the limit of "
                f"{self.max_packet} (a quarter of capacity {self.capacity})"
            )
        v = self._v
        seq = int(v.gseq[0]) + 1
        i = seq % v.n
        pos = int(v.reserve[0])
        v.seq[i] = _WRITING
        v.reserve[0] = pos + size  # before any byte moves: readers check against it
        start = pos % self.capacity
        src = np.frombuffer(data, np.uint8)
        first = min(size, self.capacity - start)
        self._buf[start : start + first] = src[:first]
        if first < size:
            self._buf[: size - first] = src[first:]
        flags = PacketFlags.NONE
        if key:
            flags |= PacketFlags.KEY
        if corrupt:
            flags |= PacketFlags.CORRUPT
        if discontinuity:
            flags |= PacketFlags.DISCONTINUITY
        v.pos[i] = pos
        v.size[i] = size
        v.flags[i] = int(flags)
        v.pts[i] = NO_PTS if pts is None else pts
        v.dts[i] = NO_PTS if dts is None else dts
        v.duration[i] = duration
        v.capture[i] = time.time_ns() if capture_ns is None else capture_ns
        v.seq[i] = seq
        v.gseq[0] = seq
        if key:
            v.last_key[0] = seq
        self._published[0] = seq
        self._last_pts[0] = v.pts[i]
        v.word[0] = (int(v.word[0]) + 1) & 0xFFFFFFFF
        _sys.futex_wake(v.word_addr)
        return seq

    @property
    def path(self) -> str:
        """Filesystem path of the ring's segment."""
        return str(self._seg.path)

    def close(self) -> None:
        """Tell subscribers the ring is gone and remove it."""
        if self._reaper.stopped:
            return
        self._reaper.stop()
        v = self._v
        v.shutdown[0] = 1
        v.word[0] = (int(v.word[0]) + 1) & 0xFFFFFFFF
        _sys.futex_wake(v.word_addr)
        del self._v, self._buf, self._published, self._last_pts
        self._seg.close(unlink=True)

    def __enter__(self) -> PacketPublisher:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


class PacketSubscriber:
    """Reader of a packet ring; starts at the newest keyframe.

    Use :func:`subscribe_packets`. ``codec``, ``extradata`` and ``time_base``
    describe the stream as currently published.
    """

    def __init__(self, key: str, *, name: str | None = None, connect_timeout: float = 0.0) -> None:
        self.key = key
        self.name = name or f"pkt-{os.getpid()}-{id(self) & 0xFFFF:x}"
        self._seg = open_segment(key, KIND_PACKETS, connect_timeout)
        try:
            self._v = _IndexViews(self._seg)
            self._index = register(self._seg, self.name, MODE_SEQUENTIAL, 0)
        except BaseException:
            self._seg.close()
            raise
        self._buf = np.ndarray((self._v.capacity,), np.uint8, buffer=self._seg.payload)
        self._counters = self._seg.sub_stats(self._index)
        self._lock = threading.Lock()
        self._closed = False
        self._gone = False
        self._timeouts = 0
        self._lost = 0
        self._discontinuity = False
        self._pid = int(self._seg.header["pub_pid"])
        self._watch = watch.watch_pid(self._pid, self._on_publisher_exit)
        self._anchor(initial=True)

    def _on_publisher_exit(self) -> None:
        self._gone = True
        if not self._closed:
            _sys.futex_wake(self._v.word_addr)

    def _anchor(self, *, after: int = 0, initial: bool = False) -> None:
        """Point at the newest keyframe newer than ``after`` still readable, or the next one."""
        v = self._v
        key_seq = int(v.last_key[0])
        i = key_seq % v.n
        readable = (
            key_seq > after
            and int(v.seq[i]) == key_seq
            and int(v.reserve[0]) - int(v.pos[i]) <= v.capacity
        )
        if readable:
            self._want = key_seq
            self._need_key = False
        else:
            self._want = int(v.gseq[0]) + 1
            self._need_key = True
        if not initial and not self._discontinuity:
            # overruns that follow each other before a packet is delivered are
            # one gap in the stream: counted and reported once
            self._discontinuity = True
            self._counters[4] += 1  # overruns

    # ---- stream description ------------------------------------------
    @property
    def codec(self) -> str:
        """Codec name, e.g. ``"h264"``."""
        return bytes(self._seg.header["codec"].item()).decode()

    @property
    def extradata(self) -> bytes:
        """Codec extradata (SPS/PPS...)."""
        h = self._seg.header
        return bytes(h["extradata"][: min(int(h["extradata_len"]), MAX_EXTRADATA)])

    @property
    def time_base(self) -> tuple[int, int]:
        """(num, den) of the packets' timestamps."""
        h = self._seg.header
        return int(h["time_base_num"]), int(h["time_base_den"])

    # ---- reading -----------------------------------------------------
    def next(self, timeout: float | None = None) -> Packet:
        """Return the next packet, waiting up to ``timeout`` seconds (None: forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        v = self._v
        with self._lock:
            while True:
                if self._closed:
                    raise PublisherGone(f"ring {self.key!r}: subscriber {self.name!r} is closed")
                word = int(v.word[0])
                packet = self._take()
                if packet is not None:
                    return packet
                if int(v.gseq[0]) >= self._want:
                    continue  # skipped a packet (overrun or waiting for a key): look again
                if self._gone or int(v.shutdown[0]) or (
                    self._watch is None and not self._seg.publisher_alive()
                ):
                    self._gone = True
                    raise PublisherGone(
                        f"ring {self.key!r}: publisher (pid {self._pid}) is gone; subscribe "
                        "again to reconnect"
                    )
                if not _sys.wait_for_publish(v.word_addr, word, deadline, watched=self._watch is not None):
                    self._timeouts += 1
                    raise FrameTimeout(f"ring {self.key!r}: no packet within {timeout:g} s")

    def _take(self) -> Packet | None:
        v = self._v
        want = self._want
        if want > int(v.gseq[0]):
            return None
        i = want % v.n
        if int(v.seq[i]) != want:
            self._overrun(want)
            return None
        pos, size = int(v.pos[i]), int(v.size[i])
        flags = PacketFlags(int(v.flags[i]))
        pts, dts = int(v.pts[i]), int(v.dts[i])
        duration, capture = int(v.duration[i]), int(v.capture[i])
        start = pos % v.capacity
        first = min(size, v.capacity - start)
        data = self._buf[start : start + first].tobytes()
        if first < size:
            data += self._buf[: size - first].tobytes()
        if int(v.seq[i]) != want or int(v.reserve[0]) - pos > v.capacity:
            self._overrun(want)  # index entry or payload bytes overwritten while copying
            return None
        self._want = want + 1
        if self._need_key and not flags & PacketFlags.KEY:
            self._lost += 1
            return None
        self._need_key = False
        lost = 0
        if self._discontinuity:
            flags |= PacketFlags.DISCONTINUITY
            lost, self._lost, self._discontinuity = self._lost, 0, False
        c = self._counters
        c[1] += 1
        c[6] = want
        c[7] = pts
        return Packet(
            seq=want,
            data=data,
            pts=None if pts == NO_PTS else pts,
            dts=None if dts == NO_PTS else dts,
            duration=duration,
            flags=flags,
            capture_ns=capture,
            lost=lost,
        )

    def _overrun(self, want: int) -> None:
        self._anchor(after=want)
        skipped = max(self._want - want, 0)
        self._lost += skipped
        self._counters[3] += skipped  # gaps

    def stats(self) -> dict[str, int]:
        """Counters: delivered, gaps (packets lost), overruns, timeouts, last_seq, last_pts."""
        c = self._counters
        return {
            "delivered": int(c[1]),
            "gaps": int(c[3]),
            "overruns": int(c[4]),
            "timeouts": self._timeouts,
            "last_seq": int(c[6]),
            "last_pts": int(c[7]),
        }

    def close(self) -> None:
        """Unregister and unmap."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            watch.unwatch(self._watch)
            if not self._seg.replaced:
                unregister(self._seg, self._index)
            self._counters = memoryview(bytearray(self._counters.tobytes())).cast("q")
            del self._buf, self._v
            self._seg.close()

    def __enter__(self) -> PacketSubscriber:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


def subscribe_packets(
    key: str, *, name: str | None = None, connect_timeout: float = 0.0
) -> PacketSubscriber:
    """Subscribe to the packet ring ``key``; the first packet returned is a keyframe."""
    return PacketSubscriber(key, name=name, connect_timeout=connect_timeout)
