"""Inference workers of a detector process: threads, each with its own runtime, taking their own jobs.

A detector process serves every camera of a node; one runtime in one thread
uses one core at most (a batch-1 model such as the default TFLite SSD gains
nothing from ``threads`` beyond a few). :class:`InferenceWorkers` runs
``count`` threads, each with its own interpreter (TFLite) or session (ONNX
Runtime). Threads are enough because both runtimes release the GIL while they
run the model (``bench/detect.py`` measures the scaling).

A worker that is free takes its next job itself, from the ``take`` callable
given to :meth:`InferenceWorkers.start` (the detector's
:class:`~camfleet.detect.fair.FairQueue`), and hands the finished job to
``on_done`` in its own thread (the server answers the camera from there): the
server's thread is in neither path, so a worker never waits for it to be
scheduled (on a busy machine every hand-off between threads costs a time slice
of latency and a share of the CPU). :attr:`InferenceWorkers.wake_fd` becomes
readable when a worker died, so the server's selector learns it without polling.
"""

from __future__ import annotations

import contextlib
import logging
import os
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
    model that does not load fails the detector's start. :meth:`start` starts
    the threads; each calls ``take()`` for its next job (it blocks until there
    is one; None ends the worker). ``on_done(done)`` runs in the worker's
    thread as soon as a job ends (an exception there is logged; the worker goes on).
    """

    def __init__(self, build: Callable[[], InferenceRuntime], count: int, name: str, *,
                 on_done: Callable[[Done], None] | None = None) -> None:
        if not 1 <= count <= MAX_WORKERS:
            raise ValueError(f"detector {name!r}: workers must be 1..{MAX_WORKERS}, got {count}")
        self.name = name
        self._on_done = on_done
        self.runtimes: list[InferenceRuntime] = []
        try:
            for _ in range(count):
                self.runtimes.append(build())
        except BaseException:
            self._close_runtimes()
            raise
        self.batches = runs_batches(self.runtimes[0])
        self._busy_since = [0] * count  # monotonic ns a worker's current job started, 0 when idle
        self.fatal: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._threads: list[threading.Thread] = []
        self._count = count

    def start(self, take: Callable[[], Job | None], release: Callable[[], None] | None = None) -> None:
        """Start the workers; each takes its jobs from ``take()`` until it answers None.

        ``release()`` is called once per job as soon as its inference has ended (before ``on_done``):
        it gives back the run slot ``take`` handed out.
        """
        if self._threads:
            raise RuntimeError(f"detector {self.name!r}: workers already started")
        self._threads = [
            threading.Thread(target=self._work, args=(i, take, release),
                             name=f"detector-{self.name}-worker{i}",
                             daemon=True)
            for i in range(self._count)
        ]
        for t in self._threads:
            t.start()

    @property
    def count(self) -> int:
        """How many workers run."""
        return self._count

    @property
    def wake_fd(self) -> int:
        """Readable when a worker died (:attr:`fatal` says how)."""
        return self._wake_r

    def busy_since_ns(self) -> int:
        """When the longest-running job now running started (monotonic ns), 0 when all are idle."""
        busy = [t for t in self._busy_since if t]
        return min(busy) if busy else 0

    def _work(self, index: int, take: Callable[[], Job | None], release: Callable[[], None] | None) -> None:
        runtime = self.runtimes[index]
        try:
            while True:
                job = take()
                if job is None:
                    return
                self._busy_since[index] = time.monotonic_ns()
                t0 = time.perf_counter_ns()
                try:
                    done = Done(job, index, results=runtime.infer(job.images))
                except Exception as exc:
                    log.exception("detector %s: inference failed (worker %d)", self.name, index)
                    done = Done(job, index, error=f"inference failed: {type(exc).__name__}: {exc}")
                finally:
                    if release is not None:
                        release()  # the next job may start on another worker while this one answers
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
        except BaseException:  # a worker that dies would leave its jobs unanswered: the process must go
            self.fatal = f"worker {index} died: {traceback.format_exc()}"
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_w, b"x")  # a full pipe is already readable

    def close(self, timeout: float = 2.0) -> None:
        """Wait for the workers to end and close the runtimes.

        Their ``take`` must answer None by now; workers stuck in a runtime are left behind.
        """
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
