"""The ingest's packet ring: created once the stream's rate is measured, grown when the stream gets faster.

Packets are fed to a real :class:`IngestWorker`'s publishing path (no camera: the sizes and
timestamps of the stream are what matters) and read back through real shared-memory rings.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from camfleet import framebus as fb
from camfleet.framebus.inspect import ring_info
from camfleet.framebus.layout import KIND_PACKETS
from camfleet.ingest import IngestConfig, IngestWorker
from camfleet.ingest.packet_sizing import HEADROOM, MIN_CAPACITY, PROBE_S, REMEASURE_S, RING_SECONDS

pytestmark = pytest.mark.process

FPS = 15
TB = Fraction(1, 90_000)


class FakePacket(bytes):
    """What the worker reads of a PyAV packet: its bytes, timestamps and flags."""

    pts: int
    dts: int | None
    duration: int
    is_keyframe: bool
    is_corrupt: bool

    @property
    def size(self) -> int:
        return len(self)


def packet(i: int, size: int, gop: int = 30) -> Any:
    p = FakePacket(bytes([i % 251]) * size)
    p.pts = p.dts = round(i / FPS / TB)
    p.duration = round(1 / FPS / TB)
    p.is_keyframe = i % gop == 0
    p.is_corrupt = False
    return p


def capacity_of(key: str) -> int:
    with fb.subscribe_packets(key, connect_timeout=1) as sub:
        return int(sub._seg.header["capacity"])  # the ring's own record of its size


def test_ring_sized_from_the_first_seconds_then_grown_at_a_keyframe() -> None:
    worker = IngestWorker(IngestConfig(url="rtsp://cam/x", key="sized"))
    worker._stream_started("h264", b"", TB)  # the worker's publishing path, no camera
    try:
        n = 0
        while ring_info("sized", KIND_PACKETS).error:  # held while the first PROBE_S s are measured
            worker._publish_packet(packet(n, 20_000))  # 20 kB x 15 fps = 300 kB/s
            n += 1
            assert n <= PROBE_S * FPS + 2, "no ring after the measurement"
        rate = 20_000 * FPS
        assert rate * RING_SECONDS * HEADROOM <= capacity_of("sized") < 8 * 2**20
        assert ring_info("sized", KIND_PACKETS).last_seq == n  # every packet held meanwhile, published
        with fb.subscribe_packets("sized", connect_timeout=1) as old:
            # four times faster for a measurement window: the ring grows at the next keyframe
            for _ in range(int((REMEASURE_S + 1) * FPS) + 30):
                worker._publish_packet(packet(n, 80_000))
                n += 1
            with pytest.raises(fb.PublisherGone):
                while True:
                    old.next(timeout=0.1)
        assert capacity_of("sized") == 8 * 2**20  # 80 kB x 15 x 8 s x 1.5 > 8 MiB: the most it may be
    finally:
        assert worker._packets is not None
        worker._packets.close()


def test_a_stream_shorter_than_the_measurement_is_published_at_its_end() -> None:
    worker = IngestWorker(IngestConfig(url="rtsp://cam/x", key="short"))
    worker._stream_started("h264", b"\x01", TB)
    for i in range(5):
        worker._publish_packet(packet(i, 1_000))
    assert ring_info("short", KIND_PACKETS).error  # still measuring
    worker._flush_backlog()  # what the session's end does
    try:
        with fb.subscribe_packets("short", connect_timeout=1) as sub:
            assert sub.codec == "h264" and sub.extradata == b"\x01"
            assert sub.next(timeout=1).is_key
        assert ring_info("short", KIND_PACKETS).last_seq == 5
        assert capacity_of("short") == MIN_CAPACITY
    finally:
        assert worker._packets is not None
        worker._packets.close()
