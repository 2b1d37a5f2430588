"""The detector's fair queue: workers take their own jobs, concurrently, round-robin between cameras.

Pure logic under threads (no processes): many taker threads, as the detector's
inference workers, and one thread adding requests, as the detector's loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from camfleet.detect.fair import FairQueue, Lane, Taken, Waiting
from camfleet.detect.workers import Job

pytestmark = pytest.mark.unit

IMG = np.zeros((2, 2, 3), np.uint8)


def _req(tag: object, images: int = 1) -> Waiting:
    return Waiting([IMG] * images, tag)


def _taken(job: Job) -> list[Taken]:
    out: list[Taken] = job.tag
    return out


def _queue(**kw: object) -> FairQueue:
    args: dict[str, object] = {"max_inflight": 2, "batches": False, "max_batch": 8, "max_wait_s": 0.0, **kw}
    return FairQueue(**args)  # type: ignore[arg-type]


def _feed(q: FairQueue, lanes: list[Lane], per_lane: int, timeout: float = 20.0) -> None:
    """Put ``per_lane`` requests ``(lane, k)`` in each lane, as fast as the queue has room (bounded)."""
    sent = dict.fromkeys(range(len(lanes)), 0)
    deadline = time.monotonic() + timeout
    while any(n < per_lane for n in sent.values()):
        assert time.monotonic() < deadline
        for i, lane in enumerate(lanes):
            if sent[i] < per_lane and q.put(lane, _req((lane, sent[i]))):
                sent[i] += 1


def _wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_strict_round_robin_and_the_in_flight_limit_counts_running_requests() -> None:
    q = _queue()
    a, b, c = Lane("a"), Lane("b"), Lane("c")
    for lane in (a, b, c):
        q.add(lane)
    assert q.put(a, _req("a1")) and q.put(a, _req("a2"))
    assert not q.put(a, _req("a3"))  # 2 waiting: the third is refused
    assert q.put(b, _req("b1")) and q.put(c, _req("c1"))
    first = q.take(0)
    assert first is not None and [t.item for t in _taken(first)] == ["a1"]
    assert not q.room(a)  # one waiting, one running
    assert q.put(b, _req("b2"))
    order = []
    for _ in range(4):
        job = q.take(0)
        assert job is not None
        order += [t.item for t in _taken(job)]
    assert order == ["b1", "c1", "a2", "b2"]  # one per camera per turn, the turn goes on from b
    assert q.take(0) is None  # nothing left: a timeout of 0 answers at once
    assert q.counts() == (0, 5)
    assert not q.finished(a) and q.room(a)


def test_a_camera_leaving_returns_its_waiting_requests_and_the_turn_passes_to_the_next() -> None:
    q = _queue()
    a, b, c = Lane("a"), Lane("b"), Lane("c")
    for lane in (a, b, c):
        q.add(lane)
    for lane in (a, b, c):
        assert q.put(lane, _req(lane.name + "1"))
    assert q.put(b, _req("b2"))
    job = q.take(0)
    assert job is not None and _taken(job)[0].item == "a1"
    dropped, running = q.remove(b)  # b's turn is next: it leaves with two waiting
    assert [w.item for w in dropped] == ["b1", "b2"] and running == 0
    assert not q.put(b, _req("late"))  # a gone camera queues nothing
    job = q.take(0)
    assert job is not None and _taken(job)[0].item == "c1"  # c keeps its turn
    dropped, running = q.remove(a)  # a leaves with its request running
    assert dropped == [] and running == 1
    assert q.finished(a)  # its last one ended: the caller closes its ring now
    assert q.counts() == (0, 1)  # c's


def test_a_batching_model_waits_for_a_full_batch_or_the_oldest_request_deadline() -> None:
    q = _queue(batches=True, max_batch=4, max_wait_s=0.05, max_inflight=2)
    a, b = Lane("a"), Lane("b")
    q.add(a)
    q.add(b)
    q.put(a, _req("a1"))
    assert q.take(0) is None  # not full, not old enough
    t0 = time.monotonic()
    job = q.take(5)
    assert job is not None and time.monotonic() - t0 >= 0.02  # the deadline closed it
    assert [t.item for t in _taken(job)] == ["a1"]
    q.put(a, _req("a2", images=2))
    q.put(b, _req("b1"))
    q.put(b, _req("b2"))
    job = q.take(0)  # 4 images wait: due at once, round-robin across cameras, at most 4 images
    assert job is not None and len(job.images) == 4
    assert [t.item for t in _taken(job)] == ["b1", "a2", "b2"]  # b's turn first: a started the last job


def test_close_wakes_every_worker_waiting_for_a_job() -> None:
    q = _queue()
    got: list[Job | None] = []
    takers = [threading.Thread(target=lambda: got.append(q.take())) for _ in range(3)]
    for t in takers:
        t.start()
    q.close()
    for t in takers:
        t.join(5)
    assert got == [None, None, None]


def test_many_workers_taking_concurrently_keep_limits_and_each_cameras_order() -> None:
    """4 worker threads take and finish jobs while the loop's thread adds requests of 5 cameras as
    fast as their limit allows: every request is run exactly once, each camera's in its order, and
    the limit is never passed."""
    q = _queue(max_inflight=2)
    lanes = [Lane(f"cam{i}") for i in range(5)]
    for lane in lanes:
        q.add(lane)
    per_lane = 200
    log: list[tuple[int, str, int]] = []  # (job number, camera, request number) as taken
    log_lock = threading.Lock()
    over: list[str] = []

    def worker() -> None:
        while (job := q.take()) is not None:
            for t in _taken(job):
                lane, n = t.item
                with q._cond:  # the limit holds at every instant a job is running
                    if len(lane.waiting) + lane.running > q.max_inflight:
                        over.append(lane.name)
                with log_lock:
                    log.append((job.number, lane.name, n))
                q.finished(lane)

    workers = [threading.Thread(target=worker) for _ in range(4)]
    for w in workers:
        w.start()
    _feed(q, lanes, per_lane)
    _wait_for(lambda: len(log) == per_lane * len(lanes))
    _wait_for(lambda: q.counts() == (0, 0))
    q.close()
    for w in workers:
        w.join(5)
    assert over == []
    log.sort()
    assert [n for n, _, _ in log] == list(range(1, len(log) + 1))  # one request per job, all numbered
    for lane in lanes:
        assert [k for _, name, k in log if name == lane.name] == list(range(per_lane))



def _one_slot_a1_b1() -> tuple[FairQueue, Lane, Lane]:
    """A queue with one run slot and lanes a and b, one request queued in each (a1, b1)."""
    q = _queue(max_running=1)
    a, b = Lane("a"), Lane("b")
    q.add(a)
    q.add(b)
    assert q.put(a, _req("a1")) and q.put(b, _req("b1"))
    return q, a, b


def test_a_worker_takes_a_job_only_while_a_run_slot_is_free() -> None:
    q, _a, _b = _one_slot_a1_b1()
    first = q.take(0)
    assert first is not None and q.running_jobs() == 1
    assert q.take(0.05) is None  # b1 waits, but the one slot is taken
    got: list[Job | None] = []
    taker = threading.Thread(target=lambda: got.append(q.take(5)))
    taker.start()
    q.end()  # the first job's inference is over: the waiting worker starts b1 at once
    taker.join(5)
    assert got and got[0] is not None and [t.item for t in _taken(got[0])] == ["b1"]


def test_a_worker_that_answered_goes_on_with_the_next_job_on_its_slot_and_gives_it_back_when_idle() -> None:
    q, a, b = _one_slot_a1_b1()
    first = q.take(0)
    assert first is not None
    q.finished(a)  # answered
    nxt = q.take_next()  # b1 runs at once on the same slot, no other worker involved
    assert nxt is not None and [t.item for t in _taken(nxt)] == ["b1"] and q.running_jobs() == 1
    q.finished(b)
    assert q.take_next() is None and q.running_jobs() == 0  # nothing due: the slot is free again
    assert q.put(a, _req("a2"))
    again = q.take(0)
    assert again is not None and [t.item for t in _taken(again)] == ["a2"]


def test_more_workers_than_run_slots_never_run_more_at_once_and_stay_round_robin() -> None:
    """6 worker threads, 2 run slots, 4 cameras that always have a request waiting: never more than
    2 jobs between take and end, every request run once and in its camera's order, and the cameras
    take turns strictly (no camera starves while workers wait for slots)."""
    q = _queue(max_inflight=2, max_running=2)
    lanes = [Lane(f"cam{i}") for i in range(4)]
    for lane in lanes:
        q.add(lane)
    per_lane = 100
    log: list[tuple[int, str, int]] = []
    lock = threading.Lock()
    running = [0, 0]  # now, most seen

    def worker() -> None:
        while (job := q.take()) is not None:
            with lock:
                running[0] += 1
                running[1] = max(running)
                log.extend((job.number, t.item[0].name, t.item[1]) for t in _taken(job))
            time.sleep(0.0005)  # an inference: the other workers queue up for the slots meanwhile
            with lock:
                running[0] -= 1
            q.end()
            for t in _taken(job):
                q.finished(t.lane)

    workers = [threading.Thread(target=worker) for _ in range(6)]
    for w in workers:
        w.start()
    # every camera's requests are queued before any can run: fill while the slots are taken
    _feed(q, lanes, per_lane)
    _wait_for(lambda: len(log) == per_lane * len(lanes))
    q.close()
    for w in workers:
        w.join(5)
    assert running[1] <= 2
    assert q.running_jobs() == 0
    log.sort()
    for lane in lanes:
        assert [k for _, name, k in log if name == lane.name] == list(range(per_lane))
    # fairness: in every window of 4 consecutive jobs, no camera ran more than 2 (its in-flight
    # limit); with strict round-robin and every camera busy, each runs about a quarter of the jobs
    names = [name for _, name, _ in log]
    for i in range(len(names) - 4):
        assert max(names[i : i + 4].count(n.name) for n in lanes) <= 2
