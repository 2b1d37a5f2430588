"""Which slot the publisher writes: spent slots, most recently written first, never a frame still wanted."""

from __future__ import annotations

import numpy as np
import pytest

from camfleet import framebus as fb
from camfleet.framebus.frame_publisher import spent_slots
from camfleet.framebus.frame_slots import WRITING

pytestmark = pytest.mark.unit


def gray() -> fb.FrameFormat:
    return fb.FrameFormat.packed_format(64, 48, "gray")


def fill(pub: fb.FramePublisher, value: int) -> int:
    return pub.publish(np.full((48, 64), value % 256, np.uint8), pts=value)


@pytest.mark.parametrize(
    ("seqs", "gseq", "floor", "expected"),
    [
        ([7, 8, 9, 10], 10, None, [2, 1, 0]),  # the newest frame is never spent
        ([7, 8, 9, 10], 10, 8, [1, 0]),  # a sequential subscriber still wants 9 and 10
        ([7, 8, 9, 10], 10, 10, [2, 1, 0]),  # all taken: still not the newest
        ([0, 0, 5, 6], 6, None, [2, 0, 1]),  # never-written slots come after written ones
        ([WRITING, 3, 4], 4, None, [1]),  # a slot being written is never offered
        ([0, 0, 0], 0, None, []),  # nothing published yet: the oldest-first pass decides
        ([3, 4, 5], 5, 2, []),  # the sequential floor is below every frame
    ],
)
def test_spent_slots(seqs: list[int], gseq: int, floor: int | None, expected: list[int]) -> None:
    assert spent_slots(seqs, gseq, floor) == expected


def test_a_reader_that_keeps_up_keeps_the_publisher_on_two_hot_slots() -> None:
    with fb.FramePublisher("hot", gray(), slots=8) as pub, fb.subscribe("hot") as sub:
        used = set()
        for i in range(40):
            fill(pub, i)
            with sub.next(1) as frame:
                assert frame.array[0, 0] == i % 256
                used.add(frame.slot)
        assert len(used) == 2


def test_a_lagging_sequential_reader_keeps_every_frame_the_ring_can_hold() -> None:
    # a fast reader spends frames as they come; the slow one has taken nothing yet
    with (
        fb.FramePublisher("lag", gray(), slots=6, max_hold=60) as pub,
        fb.subscribe("lag", mode="sequential", name="fast") as fast,
        fb.subscribe("lag", mode="sequential", name="slow") as slow,
    ):
        for i in range(1, 7):
            fill(pub, i)
            with fast.next(1) as frame:
                assert frame.seq == i
        got = []
        for _ in range(6):
            with slow.next(1) as frame:
                got.append((frame.seq, int(frame.array[0, 0])))
        assert got == [(i, i) for i in range(1, 7)]


def test_a_held_spent_frame_is_skipped_not_overwritten() -> None:
    with (
        fb.FramePublisher("held", gray(), slots=4, max_hold=60) as pub,
        fb.subscribe("held", name="holder") as holder,
        fb.subscribe("held", name="reader") as reader,
    ):
        fill(pub, 1)
        kept = holder.next(1)
        for i in range(2, 30):
            fill(pub, i)
            with reader.next(1) as frame:
                assert frame.array[0, 0] == i
        assert kept.seq == 1 and kept.array[0, 0] == 1
        kept.release()


def test_latest_reader_always_gets_the_newest_frame_after_a_burst() -> None:
    with fb.FramePublisher("burst", gray(), slots=4) as pub, fb.subscribe("burst") as sub:
        for i in range(1, 11):
            fill(pub, i)
        with sub.next(1) as frame:
            assert (frame.seq, int(frame.array[0, 0])) == (10, 10)
