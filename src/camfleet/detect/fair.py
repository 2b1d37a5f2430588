"""The detector's request queue: cameras served round-robin, workers take their next job themselves.

Every camera is a :class:`Lane`: its requests waiting (their frames already read
from its ring when they arrived) and how many a worker runs now. The server's
loop only adds requests (:meth:`FairQueue.put`); an inference worker that is
free calls :meth:`FairQueue.take` and gets the next job at once, under one lock,
without waiting for the loop's thread to be scheduled (on a busy machine every
hand-off between threads costs a time slice of latency and a share of the CPU).

Fairness: lanes are served strictly round-robin (the next job starts with the
lane after the one the last job started with), and a lane holds at most
``max_inflight`` requests waiting or running, so a busy camera cannot starve
the others. A model that runs real batches gets up to ``max_batch`` images of
several lanes in one job, once that many wait or the oldest has waited
``max_wait_s``; a batch-1 model gets one request per job, as soon as it waits.

Run slots: at most ``max_running`` jobs run at once over all workers (a worker
takes a job only while a slot is free, and gives it back with :meth:`FairQueue.end`
when its inference ends). With more workers than cores, inferences then run to
completion in turn instead of being time-sliced against each other (which
thrashes the caches and makes every request as slow as the slowest); workers
beyond the limit keep their runtimes, ready. Jobs are formed only when a slot
is free, so the round-robin order is the order the requests start running.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .workers import Job


@dataclass
class Waiting:
    """One request waiting for a worker: its images and what the server needs to answer it (``item``)."""

    images: list[np.ndarray]
    item: Any
    since: float = field(default_factory=time.monotonic)  # monotonic s it arrived


@dataclass(eq=False)
class Lane:
    """One camera's requests: waiting, and running on a worker (read and changed under the queue's lock)."""

    name: str = ""
    waiting: collections.deque[Waiting] = field(default_factory=collections.deque)
    running: int = 0
    gone: bool = False


@dataclass
class Taken:
    """One request of a job: its lane and the server's ``item``."""

    lane: Lane
    item: Any
    count: int  # images of this request in the job


class FairQueue:
    """Requests of all lanes, handed to workers round-robin (see the module). Thread-safe."""

    def __init__(self, *, max_inflight: int, batches: bool, max_batch: int, max_wait_s: float,
                 max_running: int | None = None) -> None:
        if min(max_inflight, max_batch, 1 if max_running is None else max_running) < 1 or max_wait_s < 0:
            raise ValueError("max_inflight, max_batch and max_running must be >= 1, max_wait_s >= 0")
        self.max_running = max_running  # jobs running at once, over all workers (None: no limit)
        self._running_jobs = 0
        self.max_inflight = max_inflight
        self.batches = batches
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s if batches else 0.0  # a batch-1 model gains nothing by waiting
        self._cond = threading.Condition(threading.Lock())
        self._lanes: list[Lane] = []
        self._rr = 0  # index in _lanes of the lane the next job starts with
        self._jobs = 0  # jobs taken (numbers them, in the order they were taken)
        self._closed = False

    def add(self, lane: Lane) -> None:
        """Serve ``lane`` from now on (it joins the round after the others)."""
        with self._cond:
            self._lanes.append(lane)

    def remove(self, lane: Lane) -> tuple[list[Waiting], int]:
        """Serve ``lane`` no more: its requests waiting (the caller releases their frames), how many run."""
        with self._cond:
            lane.gone = True
            if lane in self._lanes:
                i = self._lanes.index(lane)
                del self._lanes[i]
                if i < self._rr:
                    self._rr -= 1  # the lane after it keeps its turn
            dropped = list(lane.waiting)
            lane.waiting.clear()
            return dropped, lane.running

    def room(self, lane: Lane) -> bool:
        """Whether ``lane`` may add a request now (fewer than ``max_inflight`` waiting or running)."""
        with self._cond:
            return len(lane.waiting) + lane.running < self.max_inflight

    def put(self, lane: Lane, waiting: Waiting) -> bool:
        """Queue a request of ``lane``; False (not queued) when it has ``max_inflight`` already or is gone."""
        with self._cond:
            if lane.gone or len(lane.waiting) + lane.running >= self.max_inflight:
                return False
            lane.waiting.append(waiting)
            if self._slot_free():  # else end() wakes a worker when a slot frees: no wake-up for nothing
                self._cond.notify()
            return True

    def finished(self, lane: Lane) -> bool:
        """A worker ended one request of ``lane``; True when the lane is gone and that was its last one."""
        with self._cond:
            lane.running -= 1
            return lane.gone and lane.running == 0

    def end(self) -> None:
        """A worker's job has left the runtime: its run slot is free (call once per job taken)."""
        with self._cond:
            self._running_jobs -= 1
            if self._due() is not None:  # something waits: a worker waiting for a slot takes it (or times it)
                self._cond.notify()

    def running_jobs(self) -> int:
        """Jobs taken and not yet ended (:meth:`end`)."""
        with self._cond:
            return self._running_jobs

    def _slot_free(self) -> bool:
        return self.max_running is None or self._running_jobs < self.max_running

    def counts(self) -> tuple[int, int]:
        """Requests waiting and running now, over all lanes."""
        with self._cond:
            return (sum(len(lane.waiting) for lane in self._lanes),
                    sum(lane.running for lane in self._lanes))

    def close(self) -> None:
        """Wake every worker waiting in :meth:`take`; from now on it answers None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Job | None:
        """The next job, once one waits and a run slot is free; None once closed or after ``timeout`` s.

        The caller calls :meth:`end` when the job's inference is over.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                wait = self._due() if self._slot_free() else None  # no slot: end() wakes us
                if wait == 0.0:
                    self._running_jobs += 1
                    return self._form()
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(wait)
            return None

    def _due(self) -> float | None:
        """0.0 when a job may be formed now, else seconds until one may (None: nothing waits)."""
        waiting = [lane.waiting for lane in self._lanes if lane.waiting]
        if not waiting:
            return None
        if not self.batches:
            return 0.0
        images = sum(len(w.images) for q in waiting for w in q)
        oldest = min(q[0].since for q in waiting)
        left = oldest + self.max_wait_s - time.monotonic()
        return 0.0 if images >= self.max_batch or left <= 0 else left

    def _form(self) -> Job:
        """Requests taken round-robin, one per lane per turn, up to ``max_batch`` images.

        One request only for a batch-1 model. Under the lock, with at least one request waiting.
        """
        n = len(self._lanes)
        start = self._rr % n
        order = self._lanes[start:] + self._lanes[:start]
        limit = self.max_batch if self.batches else 1  # requests per job
        taken: list[Taken] = []
        images: list[np.ndarray] = []
        progress = True
        while progress and len(images) < self.max_batch and len(taken) < limit:
            progress = False
            for i, lane in enumerate(order):
                if not lane.waiting or (taken and len(images) + len(lane.waiting[0].images) > self.max_batch):
                    continue
                w = lane.waiting.popleft()
                if not taken:
                    self._rr = (start + i + 1) % n  # the next job starts after the first lane served here
                lane.running += 1
                taken.append(Taken(lane, w.item, len(w.images)))
                images += w.images
                progress = True
                if len(images) >= self.max_batch or len(taken) >= limit:
                    break
        self._jobs += 1
        if self._slot_free() and self._due() == 0.0:
            self._cond.notify()  # more is due: another idle worker may take it at once
        return Job(self._jobs, images, taken)
