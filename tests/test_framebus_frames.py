"""Frame ring behaviour in one process (separate descriptors behave like separate processes)."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from camfleet import framebus as fb
from camfleet.framebus.inspect import ring_info

pytestmark = pytest.mark.unit


def gray(w: int = 64, h: int = 48) -> fb.FrameFormat:
    return fb.FrameFormat.packed_format(w, h, "gray")


def take(sub: fb.FrameSubscriber) -> int:
    with sub.next(1) as frame:
        return frame.seq


def fill(pub: fb.FramePublisher, value: int) -> int:
    shape = pub.format.planes[0].shape
    return pub.publish(np.full(shape, value % 256, np.uint8), pts=value)


@pytest.mark.parametrize(
    ("pix", "shapes"),
    [
        ("gray", [(48, 64)]),
        ("yuv420p", [(48, 64), (24, 32), (24, 32)]),
        ("nv12", [(48, 64), (24, 32, 2)]),
        ("bgr24", [(48, 64, 3)]),
        ("rgb24", [(48, 64, 3)]),
    ],
)
def test_every_pixel_format_round_trips_planes(pix: str, shapes: list[tuple[int, ...]]) -> None:
    fmt = fb.FrameFormat(64, 48, pix)
    rng = np.random.default_rng(1)
    planes = [rng.integers(0, 255, s, dtype=np.uint8) for s in shapes]
    with fb.FramePublisher("fmt", fmt, slots=3) as pub, fb.subscribe("fmt") as sub:
        pub.publish(planes, pts=7, capture_ns=123)
        with sub.next(1) as frame:
            assert [p.shape for p in frame.planes] == shapes
            for got, want in zip(frame.planes, planes, strict=True):
                np.testing.assert_array_equal(got, want)
                assert not got.flags.writeable
            assert (frame.pts, frame.capture_ns, frame.seq) == (7, 123, 1)
            # DLPack: zero-copy, same memory as the shared-memory view
            arr = np.from_dlpack(frame)
            assert frame.__dlpack_device__() == (1, 0)
            assert np.shares_memory(arr, frame.array)


def test_strides_are_honoured_and_header_records_them() -> None:
    fmt = fb.FrameFormat(100, 50, "yuv420p", strides=(128, 64, 64))
    assert [p.stride for p in fmt.planes] == [128, 64, 64]
    with fb.FramePublisher("strided", fmt) as pub, fb.subscribe("strided") as sub:
        y = np.arange(5000, dtype=np.uint8).reshape(50, 100)
        pub.publish([y, np.ones((25, 50), np.uint8), np.zeros((25, 50), np.uint8)])
        with sub.next(1) as frame:
            assert frame.format.strides == (128, 64, 64)
            assert frame.planes[0].strides == (128, 1)
            np.testing.assert_array_equal(frame.planes[0], y)


def test_latest_mode_skips_and_counts() -> None:
    with fb.FramePublisher("latest", gray(), slots=4) as pub, fb.subscribe("latest") as sub:
        for i in range(10):
            fill(pub, i)
        with sub.next(1) as frame:
            assert frame.seq == 10 and frame.array[0, 0] == 9
        st = sub.stats()
        assert (st.delivered, st.skipped, st.last_seq, st.last_pts) == (1, 9, 10, 9)
        with pytest.raises(fb.FrameTimeout):
            sub.next(0.01)
        assert sub.stats().timeouts == 1


def test_sequential_overrun_reports_lost_frames_then_resumes_at_oldest() -> None:
    with fb.FramePublisher("seq", gray(), slots=4) as pub:
        fill(pub, 0)
        with fb.subscribe("seq", mode="sequential") as sub:
            for i in range(1, 10):
                fill(pub, i)
            # ring holds seqs 7..10; the subscriber wanted 1 (the newest at subscribe time)
            with pytest.raises(fb.Overrun) as err:
                sub.next(1)
            assert err.value.lost == 6 and err.value.resume_seq == 7
            got = []
            for _ in range(4):
                with sub.next(1) as frame:
                    got.append(frame.seq)
            assert got == [7, 8, 9, 10]
            st = sub.stats()
            assert (st.gaps, st.overruns, st.delivered) == (6, 1, 4)


def test_held_frame_is_never_overwritten_and_others_keep_flowing() -> None:
    with (
        fb.FramePublisher("lease", gray(), slots=3, max_hold=60) as pub,
        fb.subscribe("lease", name="holder") as holder,
        fb.subscribe("lease", name="other") as other,
    ):
        fill(pub, 42)
        kept = holder.next(1)
        for i in range(50):
            fill(pub, i)
            with other.next(1) as f:
                assert f.array[0, 0] == i % 256
        assert kept.array[0, 0] == 42 and kept.seq == 1
        kept.check()
        kept.release()
        with pytest.raises(fb.LeaseRevoked, match="released"):
            _ = kept.array


def test_lease_limit_and_reservation() -> None:
    with fb.FramePublisher("limit", gray(), slots=4) as pub:
        fill(pub, 1)
        with fb.subscribe("limit", max_held=2) as sub:
            a = sub.next(1)
            fill(pub, 2)
            b = sub.next(1)
            fill(pub, 3)
            with pytest.raises(fb.LeaseLimit):
                sub.next(1)
            a.release()
            b.release()
            with pytest.raises(fb.SubscriberLimit, match="promised"):
                fb.subscribe("limit", max_held=2)


def test_hold_past_max_hold_is_revoked_and_next_access_raises() -> None:
    with fb.FramePublisher("revoke", gray(), slots=2, max_hold=0.05) as pub:
        fill(pub, 1)
        with fb.subscribe("revoke", name="slow") as slow:
            frame = slow.next(1)
            # within max_hold the publisher uses the other slot and leaves ours alone
            fill(pub, 2)
            assert frame.array[0, 0] == 1
            time.sleep(0.1)  # let the lease expire: this is the condition under test
            fill(pub, 3)
            fill(pub, 4)
            with pytest.raises(fb.LeaseRevoked, match="max_hold"):
                _ = frame.array
            frame.release()
            assert slow.stats().revocations == 1
            assert pub.stats().revocations == 1


def test_wait_policy_evicts_laggard_which_can_resubscribe() -> None:
    with fb.FramePublisher("evict", gray(), slots=3, policy="wait", ack_timeout=0.05) as pub:
        fill(pub, 0)
        lag = fb.subscribe("evict", mode="sequential", name="lag")
        fast = fb.subscribe("evict", mode="sequential", name="fast")
        seen = []
        for i in range(1, 8):
            fill(pub, i)
            with fast.next(1) as f:
                seen.append(f.seq)
        assert pub.stats().evictions == 1
        assert pub.stats().waits >= 1
        with pytest.raises(fb.Evicted):
            lag.next(1)
        # fast saw everything from its start, without gaps
        assert fast.stats().gaps == 0
        lag.close()
        with fb.subscribe("evict", mode="sequential", name="lag") as again:
            newest = pub.stats().last_seq
            fill(pub, 99)
            # a new subscriber starts at the newest frame at subscribe time
            assert [take(again), take(again)] == [newest, newest + 1]
        fast.close()


def test_wait_policy_blocks_publisher_until_subscriber_takes_frame() -> None:
    with fb.FramePublisher("block", gray(), slots=2, policy="wait", ack_timeout=5) as pub:
        fill(pub, 0)
        with fb.subscribe("block", mode="sequential") as sub:
            fill(pub, 1)  # slot of frame 1 was free; frame 1 (newest at subscribe) is protected
            done = threading.Event()

            def publish_third() -> None:
                fill(pub, 2)
                done.set()

            t = threading.Thread(target=publish_third)
            t.start()
            assert not done.wait(0.2)  # publisher is blocked: no slot consumed yet
            with sub.next(1) as f:
                assert f.seq == 1
            assert done.wait(5)
            t.join(5)
            assert take(sub) == 2
            assert pub.stats().evictions == 0


def test_duplicate_name_refused_and_subscriber_limit() -> None:
    with fb.FramePublisher("names", gray(), slots=80) as pub:
        a = fb.subscribe("names", name="det")
        with pytest.raises(fb.DuplicateSubscriber, match=r"'det' is already registered \(pid \d+\)"):
            fb.subscribe("names", name="det")
        subs = [fb.subscribe("names", name=f"s{i}") for i in range(63)]
        with pytest.raises(fb.SubscriberLimit, match="all 64 subscriber entries"):
            fb.subscribe("names", name="one-too-many")
        assert pub.stats().subscribers == 64
        for s in [a, *subs]:
            s.close()
        assert ring_info("names").subscribers == []


def test_already_running_names_the_pid() -> None:
    with (
        fb.FramePublisher("dup", gray()),
        pytest.raises(fb.AlreadyRunning, match=rf"already running \(pid {os.getpid()}\)"),
    ):
        fb.FramePublisher("dup", gray())


def test_publisher_close_gives_publisher_gone_after_drain() -> None:
    pub = fb.FramePublisher("drain", gray(), slots=4)
    sub = fb.subscribe("drain", mode="sequential")
    fill(pub, 1)
    fill(pub, 2)
    pub.close()
    assert [take(sub), take(sub)] == [1, 2]
    with pytest.raises(fb.PublisherGone):
        sub.next(1)
    sub.close()


def test_blocking_next_wakes_on_publish_and_costs_no_cpu_while_idle() -> None:
    with fb.FramePublisher("idle", gray()) as pub, fb.subscribe("idle") as sub:
        got: list[int] = []
        cpu: list[float] = []

        def reader() -> None:
            t0 = resource.getrusage(resource.RUSAGE_THREAD)
            with sub.next(5) as f:
                got.append(f.seq)
            t1 = resource.getrusage(resource.RUSAGE_THREAD)
            cpu.append((t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime))

        t = threading.Thread(target=reader)
        t.start()
        time.sleep(1.0)  # the reader is idle for this second; that is what is measured
        fill(pub, 1)
        t.join(5)
        assert got == [1]
        assert cpu[0] < 0.05, f"idle wait used {cpu[0]:.3f} s of CPU in 1 s"


def test_frame_released_from_another_thread_while_next_blocks() -> None:
    with (
        fb.FramePublisher("threads", gray(), slots=3, policy="wait", ack_timeout=5) as pub,
        fb.subscribe("threads", mode="sequential", max_held=2) as sub,
    ):
        fill(pub, 1)
        first = sub.next(1)
        got: list[int] = []
        t = threading.Thread(target=lambda: got.append(take(sub)))
        t.start()  # blocks in next(): nothing new yet
        released = threading.Event()
        threading.Thread(target=lambda: (first.release(), released.set())).start()
        assert released.wait(2), "release() was blocked by a sleeping next()"
        fill(pub, 2)
        t.join(5)
        assert got == [2]


def test_iteration_releases_each_frame() -> None:
    with fb.FramePublisher("iter", gray(), slots=3) as pub, fb.subscribe("iter", mode="sequential") as sub:
        fill(pub, 0)
        seen = []
        for frame in sub:
            seen.append(frame.seq)
            assert sub.held == 1
            if len(seen) == 5:
                break
            fill(pub, len(seen))
        assert seen == [1, 2, 3, 4, 5]
        assert sub.held == 0


def test_writable_frame_in_place_and_bad_shapes() -> None:
    with fb.FramePublisher("inplace", fb.FrameFormat.packed_format(64, 48, "yuv420p")) as pub:
        assert pub.begin().array.shape == (72, 64)
        pub.commit(pts=1)
        with pytest.raises(fb.InvalidFormat, match="does not match"):
            pub.publish(np.zeros((48, 64), np.uint8))
        with pytest.raises(fb.InvalidFormat, match="bytes given"):
            pub.publish(b"short")
        pub.publish(bytes(64 * 48 * 3 // 2))
        assert pub.stats().published == 2


def test_flags_travel_with_frames_and_format_change_is_announced() -> None:
    pub = fb.FramePublisher("flags", gray(), slots=3)
    with fb.subscribe("flags", mode="sequential") as sub:
        pub.publish(np.zeros((48, 64), np.uint8), flags=fb.FrameFlags.KEY | fb.FrameFlags.DISCONTINUITY)
        with sub.next(1) as f:
            assert f.flags == fb.FrameFlags.KEY | fb.FrameFlags.DISCONTINUITY
        pub.close(format_changed=True)
        with pytest.raises(fb.FormatChanged, match="new frame format"):
            sub.next(1)
    with fb.FramePublisher("flags", gray(32, 24)), fb.subscribe("flags") as again:
        assert again.format.width == 32


def test_one_reclaim_thread_per_process_whatever_the_rings(shm_dir: Path) -> None:
    """Every ring a process publishes shares one reclaim thread (a camera process has several
    rings; each thread's wake-ups cost CPU); it ends with the last ring and comes back with the next."""
    fmt = fb.FrameFormat.packed_format(16, 16, "gray")

    def reapers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "camfleet-framebus-reaper" and t.is_alive()]

    rings: list[fb.FramePublisher | fb.PacketPublisher] = [
        fb.FramePublisher(f"one-reaper-{i}", fmt) for i in range(3)]
    rings.append(fb.PacketPublisher("one-reaper-p", "h264"))
    assert len(reapers()) == 1
    thread = reapers()[0]
    for ring in rings:
        ring.close()
    thread.join(5)  # it notices at its next sweep that nothing is left
    assert not thread.is_alive()
    with fb.FramePublisher("one-reaper-again", fmt):
        assert len(reapers()) == 1
