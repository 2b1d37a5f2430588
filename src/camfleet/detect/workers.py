"""Inference workers of a detector process: threads, each with its own runtime, fed one job at a time.

A detector process serves every camera of a node; one runtime in one thread
uses one core at most (a batch-1 model such as the default TFLite SSD gains
nothing from ``threads`` beyond a few). :class:`InferenceWorkers` runs
``count`` threads, each with its own interpreter (TFLite) or session (ONNX
Runtime), over one job queue. Threads are enough because both runtimes
release the GIL while they run the model (``bench/detect.py`` measures the
scaling).

The server hands a job to :meth:`InferenceWorkers.submit` only while
:attr:`InferenceWorkers.idle` says there is room: one job per worker plus
``ahead`` jobs waiting in the queue. With ``ahead=0`` jobs never wait, and the
server keeps choosing which camera goes next until a worker is free (what
batching needs: a batch formed later is a bigger batch). With ``ahead > 0``
a worker that finishes takes its next job at once, without a round trip
through the server's thread (what a batch-1 model wants on a busy machine,
where every hand-off between threads waits for a time slice).

A finished job is handed to ``on_done`` in the worker's own thread first
(the server answers the camera from there, again without a hand-off), then
comes back through :meth:`InferenceWorkers.done`, in the order they
finished; :attr:`InferenceWorkers.wake_fd` becomes readable when one is
there, so the server's selector wakes without polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .types import Detection

log = logging.getLogger("camfleet.detect")

MAX_WORKERS = 64
"""Most inference workers one detector process runs."""


class InferenceRuntime(Protocol):
    """What a worker needs from a runtime: ``infer(images)`` returns one detection list per image."""

    def infer(self, batch: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect objects in each image."""
        ...


def default_workers(processes: int = 1) -> int:
    """One worker per core this process may run on, shared among ``processes`` detector processes.

    At least 1, at most :data:`MAX_WORKERS`.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores // max(processes, 1)))


def runs_batches(runtime: object) -> bool:
    """Whether one call of ``runtime`` runs several images at once (a model with a batch axis).

    A runtime says so with a ``runs_batches`` attribute; one that does not is taken as batch-1.
    """
    return bool(getattr(runtime, "runs_batches", False))


@dataclass
class Job:
    """Images to detect in one call, and what the server needs to route the results (``tag``)."""

    number: int
    images: list[np.ndarray]
    tag: Any = None


@dataclass
class Done:
    """A finished job: one detection list per image, or ``error``; ``infer_ns`` spent in the runtime."""

    job: Job
    worker: int
    results: list[list[Detection]] = field(default_factory=list)
    error: str | None = None
    infer_ns: int = 0


class InferenceWorkers:
    """``count`` threads, each running jobs on its own runtime from ``build()``.

    ``build`` is called ``count`` times here, before any thread starts, so a
    model that does not load fails the detector's start. ``ahead``: jobs that
    may wait in the queue beyond one per worker. ``on_done(done)`` runs in the
    worker's thread as soon as a job ends (an exception there is logged and
    the job still comes back through :meth:`done`). Not thread-safe itself:
    :meth:`submit`, :meth:`done` and :attr:`idle` belong to the server's thread.
    """

    def __init__(self, build: Callable[[], InferenceRuntime], count: int, name: str, *,
                 ahead: int = 0, on_done: Callable[[Done], None] | None = None) -> None:
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError(f"detector {name!r}: workers must be 1..{MAX_WORKERS}, got {count}")
        if ahead < 0:
            raise ValueError(f"detector {name!r}: ahead must be >= 0, got {ahead}")
        self.name = name
        self.ahead = ahead
        self._on_done = on_done
        self.runtimes: list[InferenceRuntime] = []
        try:
            for _ in range(count):
                self.runtimes.append(build())
        except BaseException:
            self._close_runtimes()
            raise
        self.batches = runs_batches(self.runtimes[0])
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._busy_since = [0] * count  # monotonic ns a worker's current job started, 0 when idle
        self._outstanding = 0
        self.fatal: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._threads = [
            threading.Thread(target=self._work, args=(i,), name=f"detector-{name}-worker{i}", daemon=True)
            for i in range(count)
        ]
        for t in self._threads:
            t.start()

    @property
    def count(self) -> int:
        """How many workers run."""
        return len(self._threads)

    @property
    def idle(self) -> int:
        """Jobs :meth:`submit` takes now: free workers, plus room in the queue when ``ahead`` > 0."""
        return len(self._threads) + self.ahead - self._outstanding

    @property
    def free(self) -> int:
        """Workers with no job running or waiting for them (a job submitted now starts at once)."""
        return max(0, len(self._threads) - self._outstanding)

    @property
    def wake_fd(self) -> int:
        """Readable when a job finished (or a worker died); :meth:`done` empties it."""
        return self._wake_r

    def busy_since_ns(self) -> int:
        """When the longest-running job now running started (monotonic ns), 0 when all are idle."""
        busy = [t for t in self._busy_since if t]
        return min(busy) if busy else 0

    def submit(self, job: Job) -> None:
        """Run ``job`` on the next free worker (it may queue, see ``ahead``); only while :attr:`idle` > 0."""
        if self.idle <= 0:
            raise RuntimeError(f"detector {self.name!r}: no room for job {job.number}")
        self._outstanding += 1
        self._jobs.put(job)

    def done(self) -> list[Done]:
        """The jobs finished since the last call, in the order they finished."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        out: list[Done] = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self._done.get_nowait())
        self._outstanding -= len(out)
        return out

    def _work(self, index: int) -> None:
        runtime = self.runtimes[index]
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                self._busy_since[index] = time.monotonic_ns()
                t0 = time.perf_counter_ns()
                try:
                    done = Done(job, index, results=runtime.infer(job.images))
                except Exception as exc:
                    log.exception("detector %s: inference failed (worker %d)", self.name, index)
                    done = Done(job, index, error=f"inference failed: {type(exc).__name__}: {exc}")
                done.infer_ns = time.perf_counter_ns() - t0
                if not done.error and len(done.results) != len(job.images):
                    done = Done(job, index, error=f"the runtime answered {len(done.results)} results "
                                                  f"for {len(job.images)} images", infer_ns=done.infer_ns)
                self._busy_since[index] = 0
                if self._on_done is not None:
                    try:
                        self._on_done(done)
                    except Exception:
                        log.exception("detector %s: answering job %d failed (worker %d)", self.name,
                                      job.number, index)
                self._done.put(done)
                self._wake()
        except BaseException:  # a worker that dies would leave its jobs unanswered: the process must go
            self.fatal = f"worker {index} died: {traceback.format_exc()}"
            self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")  # a full pipe is already readable

    def close(self, timeout: float = 2.0) -> None:
        """Stop the workers (those stuck in a runtime are left behind) and close the runtimes."""
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0.0))
        if not any(t.is_alive() for t in self._threads):
            self._close_runtimes()  # a runtime still running must not be freed under it
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _close_runtimes(self) -> None:
        for rt in self.runtimes:
            close = getattr(rt, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()
