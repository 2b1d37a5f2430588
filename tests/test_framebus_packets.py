"""Packet ring: integrity, late join at a keyframe, overrun and resync."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from camfleet import framebus as fb

from .support import fb_workers as w

pytestmark = pytest.mark.process

ctx = mp.get_context("spawn")


def test_payload_integrity_across_wraparound() -> None:
    with fb.PacketPublisher("pk", "hevc", extradata=b"\x01sps\x02pps", time_base=(1, 90000),
                            capacity=64 * 1024, index_size=64) as pub, fb.subscribe_packets("pk") as sub:
        assert (sub.codec, sub.extradata, sub.time_base) == ("hevc", b"\x01sps\x02pps", (1, 90000))
        total = 0
        for seq in range(1, 2001):
            size = (seq * 7919) % 15000 + 1
            data = w.packet_payload(seq, size)
            total += len(data)
            pub.publish(data, pts=seq, dts=seq - 1, duration=1, key=seq == 1, corrupt=seq == 5)
            p = sub.next(1)
            assert p.seq == seq and p.data == data
            assert (p.pts, p.dts, p.duration) == (seq, seq - 1, 1)
            assert p.is_key == (seq == 1)
            assert bool(p.flags & fb.PacketFlags.CORRUPT) == (seq == 5)
            assert p.lost == 0
        assert total > 10 * 64 * 1024  # the buffer wrapped many times
        assert sub.stats()["gaps"] == 0


def test_late_subscriber_starts_at_last_keyframe() -> None:
    with fb.PacketPublisher("late", capacity=1 << 20) as pub:
        for seq in range(1, 26):
            pub.publish(w.packet_payload(seq, 100), pts=seq, key=seq % 10 == 1)
        with fb.subscribe_packets("late") as sub:
            first = sub.next(1)
            assert first.seq == 21 and first.is_key
            assert not first.flags & fb.PacketFlags.DISCONTINUITY
            assert [sub.next(1).seq for _ in range(4)] == [22, 23, 24, 25]


def test_subscriber_before_any_keyframe_waits_for_one() -> None:
    with fb.PacketPublisher("nokey", capacity=1 << 20) as pub, fb.subscribe_packets("nokey") as sub:
        pub.publish(b"delta", pts=1)
        pub.publish(b"delta", pts=2)
        pub.publish(b"key!!", pts=3, key=True)
        p = sub.next(1)
        assert p.is_key and p.seq == 3


def test_slow_consumer_overrun_resyncs_at_keyframe_reporting_once() -> None:
    with fb.PacketPublisher("slow", capacity=64 * 1024, index_size=64) as pub:
        pub.publish(w.packet_payload(1, 1000), key=True)
        with fb.subscribe_packets("slow") as sub:
            assert sub.next(1).seq == 1
            for seq in range(2, 300):
                pub.publish(w.packet_payload(seq, 1000), key=seq % 20 == 1)
            p = sub.next(1)
            assert p.is_key and p.flags & fb.PacketFlags.DISCONTINUITY
            assert p.seq == 281  # the newest keyframe
            assert p.lost == 279
            rest = [sub.next(1) for _ in range(18)]
            assert [q.seq for q in rest] == list(range(282, 300))
            assert not any(q.flags & fb.PacketFlags.DISCONTINUITY for q in rest)
            st = sub.stats()
            assert (st["overruns"], st["gaps"]) == (1, 279)


def test_overwritten_payload_detected_even_when_index_entry_survives() -> None:
    # A big index and a small buffer: index entries outlive their payload bytes.
    with fb.PacketPublisher("payload", capacity=64 * 1024, index_size=4096) as pub:
        pub.publish(w.packet_payload(1, 10_000), key=True)
        with fb.subscribe_packets("payload") as sub:
            for seq in range(2, 12):  # ~110 KB: wraps the 64 KiB buffer
                pub.publish(w.packet_payload(seq, 10_000), key=seq == 11)
            p = sub.next(1)
            assert p.seq == 11 and p.is_key and p.lost == 10
            assert w.packet_ok(p.seq, p.data)
            assert sub.stats()["overruns"] == 1


def test_codec_change_and_limits() -> None:
    with fb.PacketPublisher("codec", capacity=64 * 1024) as pub, fb.subscribe_packets("codec") as sub:
        pub.set_stream("hevc", b"vps", (1, 1000))
        assert (sub.codec, sub.extradata, sub.time_base) == ("hevc", b"vps", (1, 1000))
        with pytest.raises(fb.InvalidFormat, match="exceeds the limit"):
            pub.publish(bytes(20_000))
        with pytest.raises(fb.InvalidFormat, match="extradata"):
            pub.set_stream("h264", bytes(5000), (1, 90000))


def test_concurrent_reader_never_gets_a_corrupt_payload() -> None:
    n = 6000
    ready_pub, go, ready_sub = ctx.Event(), ctx.Event(), ctx.Event()
    recv, send = ctx.Pipe(duplex=False)
    pub = ctx.Process(target=w.packet_publisher, args=("race", n, ready_pub, go))
    pub.start()
    sub = ctx.Process(target=w.packet_reader, args=("race", n, send, ready_sub))
    try:
        assert ready_pub.wait(30)
        sub.start()
        assert ready_sub.wait(30)
        go.set()
        assert recv.poll(120)
        r = recv.recv()
    finally:
        for p in (pub, sub):
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join(5)
    assert r["bad"] == 0, r
    assert r["delivered"] > 0 and r["overruns"] > 0, r  # the slow reader did get overrun
    # every overrun was reported exactly once, on the packet that resumed
    assert r["discont"] == r["overruns"], r
