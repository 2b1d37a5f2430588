"""Packet ring sizing: the stream's measured rate times the seconds readers need, within limits."""

from __future__ import annotations

import pytest

from camfleet.ingest.packet_sizing import (
    HEADROOM,
    MIN_CAPACITY,
    PACKETS_HELD,
    RateProbe,
    ring_capacity,
)

pytestmark = pytest.mark.unit

MOST = 8 * 2**20


def test_capacity_is_rate_times_seconds_with_headroom_rounded_to_64k() -> None:
    rate = 2_000_000 / 8  # 2 Mbit/s
    cap = ring_capacity(rate, MOST, seconds=8)
    assert cap % (64 * 1024) == 0
    assert rate * 8 * HEADROOM <= cap < rate * 8 * HEADROOM + 64 * 1024


def test_capacity_limits_unknown_rate_and_large_packets() -> None:
    assert ring_capacity(None, MOST) == MOST  # unknown: the configured capacity, as before
    assert ring_capacity(0.0, MOST) == MOST
    assert ring_capacity(1_000, MOST) == MIN_CAPACITY  # a trickle still holds a few keyframes
    assert ring_capacity(50e6, MOST) == MOST  # a fast stream keeps the configured capacity
    assert ring_capacity(1_000, MIN_CAPACITY // 2) == MIN_CAPACITY // 2  # never above the configured
    # a stream of small packets and rare big keyframes: room for PACKETS_HELD of the largest
    assert ring_capacity(10_000, MOST, largest=200_000) >= PACKETS_HELD * 200_000


def test_probe_measures_stream_time_not_the_wall_clock() -> None:
    probe = RateProbe(probe_s=2.0, wall_s=4.0)
    # 15 fps, 10 kB per packet, delivered all at once (a file read faster than real time)
    for i in range(31):
        assert not probe.done
        probe.add(10_000, i / 15, wall=100.0)
    assert probe.done and probe.span_s == pytest.approx(2.0)
    assert probe.bytes_per_s() == pytest.approx(150_000, rel=0.01)
    assert probe.largest == 10_000


def test_probe_without_timestamps_falls_back_to_the_wall_clock() -> None:
    probe = RateProbe(probe_s=2.0, wall_s=4.0)
    assert probe.bytes_per_s() is None and not probe.done
    for i in range(10):
        probe.add(5_000, None, wall=i * 0.5)
    assert probe.done  # 4.5 s of wall clock
    rate = probe.bytes_per_s()
    assert rate is not None and rate == pytest.approx(5_000 * 9 / 4.5, rel=0.01)


def test_probe_of_one_packet_has_no_rate() -> None:
    probe = RateProbe()
    probe.add(1000, 0.0, wall=0.0)
    assert probe.bytes_per_s() is None
    assert ring_capacity(probe.bytes_per_s(), MOST) == MOST
