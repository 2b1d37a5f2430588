"""The detector service: one process per detector, shared by every camera of a node.

* **Transport.** Each camera client owns a request ring (framebus) carrying its
  images at the model's input size; a Unix socket carries small JSON control
  messages (which ring sequence numbers to detect, and the detections back).
  Images are never pickled or copied through a pipe. The client is
  :class:`~camfleet.detect.client.DetectorClient`.
* **Workers.** ``workers`` inference workers (threads, each with its own
  runtime; default one per core; :mod:`camfleet.detect.workers`), so one
  detector uses every core.
* **Few hand-offs.** This process's loop reads the sockets and, as a request
  arrives, its frames from the camera's ring, and queues it
  (:class:`~camfleet.detect.fair.FairQueue`). A free worker takes its next job
  from there itself and answers the camera from its own thread the moment the
  job ends: the loop's thread is in neither path, so a worker never waits for
  it to be scheduled (on a busy machine every hand-off between threads costs a
  time slice of latency and a share of the CPU).
* **Run slots.** At most ``max_running`` inferences run at once over all
  workers (default: one per core this process may run on); a worker beyond
  that waits, its runtime ready, until one ends. On a machine with fewer cores
  than workers, inferences then run to completion in turn (FIFO, in the
  round-robin order) instead of being time-sliced against each other, which
  thrashes the caches and makes every request wait as long as the slowest.
* **Start-up.** The detector listens before its workers build their runtimes:
  a camera that connects meanwhile waits for its welcome (its answer timeout)
  instead of retrying its connect within a short grace.
* **Batching.** A model that runs real batches (a batch axis) gets the
  requests of all cameras gathered until ``max_batch`` images are waiting or
  the oldest has waited ``max_wait_ms``; a batch-1 model gets one request per
  job, at once, so that idle workers share the requests out.
* **Fairness.** Jobs are filled round-robin, one request per camera at a
  time, and each camera may have at most ``max_inflight`` requests queued or
  running, so a busy camera cannot starve the others. Answers carry their
  request's id and go back in whatever order the workers finish.
* **Health.** The service beats a heartbeat file (:func:`read_heartbeat`);
  the node's supervisor (:mod:`camfleet.runtime.detectors`) restarts it when
  it dies or when one worker has been stuck in one inference longer than
  ``stuck_s``. Clients waiting on a dead detector get :class:`DetectorFailed`
  at once (their socket closes) and reconnect on their next request.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import mmap
import os
import selectors
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camfleet.framebus import FramebusError, FrameSubscriber, shm_dir, subscribe
from camfleet.framebus.layout import validate_key
from camfleet.framebus.segment import create_private_file
from camfleet.procutil import die_with_parent

from .client import DetectorClient, DetectorFailed
from .fair import FairQueue, Lane, Taken, Waiting
from .models import ModelSpec
from .protocol import (
    MAX_INFLIGHT,
    REQUEST_MAX_IMAGES,
    ProtocolError,
    Reader,
    listen,
    send,
    socket_path,
)
from .workers import Done, InferenceWorkers, default_workers

__all__ = [
    "DetectorClient",
    "DetectorFailed",
    "DetectorSettings",
    "Heartbeat",
    "detector_main",
    "heartbeat_path",
    "read_heartbeat",
    "serve",
]

SEND_TIMEOUT_S = 5.0
"""Seconds an answer may take to go into a camera's socket; a camera that stops reading is dropped."""

EXIT_WORKER_DIED = 70
"""Exit code of a detector process whose inference worker died (the supervisor restarts it)."""


class WorkerDied(RuntimeError):
    """An inference worker thread ended with an error outside the model call."""


MAX_REQUEST_IMAGES = 64
"""Most images a client may say one of its requests carries (its ``max_images``)."""

log = logging.getLogger("camfleet.detect")

_HB = struct.Struct("<qqqqqqqq")  # beat, busy_since, pid, batches, images, infer_ns, queued, max_batch_seen


@dataclass(frozen=True)
class DetectorSettings:
    """One detector process.

    Attributes:
        name: detector name (``[A-Za-z0-9_-]``), also its socket's name.
        model: the model to load.
        threads: CPU threads of each worker's runtime.
        workers: inference workers, each with its own runtime (None: one per core,
            :func:`~camfleet.detect.workers.default_workers`).
        max_batch: most images in one inference (models that run real batches).
        max_wait_ms: longest a request waits for a batch to fill, milliseconds (models that run
            real batches; a batch-1 model's requests go to the next idle worker at once).
        max_inflight: requests one camera may have queued or running at once.
        max_running: inferences run at once over all workers (None: one per core this process may
            run on, :func:`~camfleet.detect.workers.default_workers`); more workers than this keep
            their runtimes and take turns.
        stuck_s: an inference running longer than this is stuck (the supervisor restarts it), seconds.
        factory: ``"module:function"`` building the runtime from ``(spec, threads)``
            (default: :func:`camfleet.detect.runtime.load_runtime`).
        log_init: called first in the detector process to set up its logging
            (a picklable callable; default: plain stderr logging).
    """

    name: str
    model: ModelSpec
    threads: int = 1
    workers: int | None = None
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_inflight: int = 2
    max_running: int | None = None
    stuck_s: float = 10.0
    factory: str = "camfleet.detect.runtime:load_runtime"
    log_init: Callable[[], None] | None = None


def heartbeat_path(detector: str) -> Path:
    """The detector's heartbeat file (beside its socket)."""
    return shm_dir() / f"camfleet.det-{validate_key(detector)}.hb"


@dataclass(frozen=True)
class Heartbeat:
    """What a detector last said about itself; times are monotonic ns, ``busy_since`` 0 when idle."""

    beat_ns: int
    busy_since_ns: int
    pid: int
    batches: int
    images: int
    infer_ns: int
    queued: int
    max_batch_seen: int

    @property
    def mean_batch(self) -> float:
        """Mean images per inference."""
        return self.images / self.batches if self.batches else 0.0

    @property
    def mean_infer_ms(self) -> float:
        """Mean inference time per batch, milliseconds."""
        return self.infer_ns / self.batches / 1e6 if self.batches else 0.0


def read_heartbeat(detector: str) -> Heartbeat | None:
    """The detector's last heartbeat, or None if it has not beaten yet."""
    try:
        raw = heartbeat_path(detector).read_bytes()[: _HB.size]
    except FileNotFoundError:
        return None
    if len(raw) < _HB.size:
        return None
    beat = Heartbeat(*_HB.unpack(raw))
    if beat.pid == 0:
        return None  # the file exists, its first beat is not written yet (a starting detector)
    return beat


# ---------------------------------------------------------------------------
# server (runs in the detector process)


@dataclass
class _Camera:
    """One connected camera.

    ``lane`` (its requests waiting and running) belongs to the :class:`FairQueue`'s lock;
    ``send_lock`` guards ``conn``'s sends and its close, so that a camera slow to read its answers
    (up to :data:`SEND_TIMEOUT_S`) holds up no other camera; ``gone`` is set under it (and the
    lane's own ``gone`` under the queue's lock). The loop's
    thread and the workers (which answer, and close the ring of a camera gone) both use them.
    """

    conn: socket.socket
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    reader: Reader = field(default_factory=Reader)
    lane: Lane = field(default_factory=Lane)
    name: str = ""
    ring: FrameSubscriber | None = None
    gone: bool = False  # disconnected; its ring closes when its last running request ends
    requests: int = 0
    images: int = 0  # counted by the workers, under the server's stats_lock
    since: float = field(default_factory=time.monotonic)


@dataclass
class _Request:
    cam: _Camera
    msg: dict[str, Any]
    frames: list[Any]


def _load_factory(path: str) -> Callable[[ModelSpec, int], Any]:
    module, _, func = path.partition(":")
    factory = getattr(importlib.import_module(module), func)
    if not callable(factory):
        raise TypeError(f"detector factory {path!r} is not callable")
    return factory  # type: ignore[no-any-return]


class _Server:
    """The detector's loop: reads the sockets, forms jobs fairly, answers; the workers run the model."""

    def __init__(self, settings: DetectorSettings) -> None:
        self.s = settings
        factory = _load_factory(settings.factory)
        self.stats = [0, 0, 0, 0]  # jobs, images, infer_ns, max batch seen
        self.stats_lock = threading.Lock()  # the workers count (in _answer), the loop reads
        count = settings.workers if settings.workers is not None else default_workers()
        self.max_running = settings.max_running if settings.max_running is not None else default_workers()
        if self.max_running < 1:
            raise ValueError(f"detector {settings.name!r}: max_running must be >= 1, got {self.max_running}")
        hb = heartbeat_path(settings.name)
        fd = create_private_file(hb, mmap.PAGESIZE)  # never follows a name planted in /dev/shm
        self._hb = mmap.mmap(fd, mmap.PAGESIZE)
        os.close(fd)
        # listening before the workers build their runtimes (seconds on a busy machine): a camera that
        # connects meanwhile waits for its welcome instead of failing its connect; the node counts the
        # detector ready only once it beats (below)
        self.listener = listen(socket_path(settings.name))
        try:
            self.workers = InferenceWorkers(lambda: factory(settings.model, settings.threads), count,
                                            settings.name, on_done=self._answer)
        except BaseException:
            self.listener.close()
            with contextlib.suppress(FileNotFoundError):
                socket_path(settings.name).unlink()
            raise
        self.queue = FairQueue(max_inflight=settings.max_inflight, batches=self.workers.batches,
                               max_batch=settings.max_batch, max_wait_s=settings.max_wait_ms / 1000,
                               max_running=self.max_running)
        self.runtime = self.workers.runtimes[0]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.sel.register(self.workers.wake_fd, selectors.EVENT_READ, self.workers)
        self.cameras: dict[socket.socket, _Camera] = {}
        self.stop = False
        self.started = time.monotonic()
        self.beat()
        self.workers.start(self.queue.take, self.queue.end)

    def beat(self) -> None:
        queued, _ = self.queue.counts()
        with self.stats_lock:
            b, n, ns, biggest = self.stats
        self._hb[: _HB.size] = _HB.pack(
            time.monotonic_ns(), self.workers.busy_since_ns(), os.getpid(), b, n, ns, queued, biggest,
        )

    def run(self) -> None:
        while not self.stop:
            for key, _ in self.sel.select(timeout=0.5):  # the heartbeat's period while idle
                if key.data is None:
                    self._accept()
                elif key.data is not self.workers:  # the workers' fd: one died, see below
                    self._read(key.data)
            if self.workers.fatal is not None:
                raise WorkerDied(self.workers.fatal)
            self.beat()

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = self.listener.accept()
            conn.settimeout(SEND_TIMEOUT_S)  # recv only when readable; a send may not hang a thread
            cam = _Camera(conn)
            self.cameras[conn] = cam
            self.queue.add(cam.lane)
            self.sel.register(conn, selectors.EVENT_READ, cam)

    def _drop(self, cam: _Camera, why: str) -> None:
        if cam.gone:
            return
        log.info("detector %s: camera %s disconnected (%s)", self.s.name, cam.name or "?", why)
        self.sel.unregister(cam.conn)
        self.cameras.pop(cam.conn, None)
        with cam.send_lock:
            cam.gone = True
            cam.conn.close()
        dropped, running = self.queue.remove(cam.lane)
        for w in dropped:
            for f in w.item.frames:
                f.release()
        if running == 0:
            self._close_ring(cam)
        # else: a worker still holds frames of its ring; it closes the ring after its last one

    @staticmethod
    def _close_ring(cam: _Camera) -> None:
        if cam.ring is not None:
            cam.ring.close()
            cam.ring = None

    def _read(self, cam: _Camera) -> None:
        try:
            data = cam.conn.recv(65536)
        except OSError as exc:
            self._drop(cam, str(exc))
            return
        if not data:
            self._drop(cam, "closed")
            return
        try:
            messages = cam.reader.feed(data)
        except ProtocolError as exc:
            self._drop(cam, str(exc))
            return
        for msg in messages:
            if cam.gone:
                return
            self._handle(cam, msg)

    def _reply(self, cam: _Camera, msg: dict[str, Any]) -> None:
        try:
            with cam.send_lock:
                if cam.gone:
                    return
                send(cam.conn, msg)
        except OSError as exc:
            self._drop(cam, str(exc))

    def _handle(self, cam: _Camera, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "hello":
            self._hello(cam, msg)
        elif op == "detect":
            self._detect(cam, msg)
        elif op == "stats":
            self._reply(cam, {"op": "stats", **self._stats()})
        else:
            self._reply(cam, {"op": "error", "error": f"unknown op {op!r}"})

    def _hello(self, cam: _Camera, msg: dict[str, Any]) -> None:
        cam.name = str(msg.get("camera", ""))
        if cam.ring is not None:
            self._reply(cam, {"op": "error", "error": "hello twice on one connection"})
            return
        try:
            max_images = int(msg.get("max_images", REQUEST_MAX_IMAGES))
            if not 1 <= max_images <= MAX_REQUEST_IMAGES:
                raise ValueError(f"max_images must be 1..{MAX_REQUEST_IMAGES}, got {max_images}")
            # the images of every request the camera may have in flight are held at once
            cam.ring = subscribe(
                str(msg["ring"]), mode="sequential", name=f"detector-{self.s.name}",
                max_held=MAX_INFLIGHT * max_images, connect_timeout=2.0,
            )
        except (FramebusError, KeyError, TypeError, ValueError) as exc:
            self._reply(cam, {"op": "error", "error": f"cannot read request ring: {exc}"})
            return
        w, h = getattr(self.runtime, "input_size", (0, 0))
        self._reply(cam, {"op": "welcome", "max_batch": self.s.max_batch, "workers": self.workers.count,
                          "max_running": self.max_running, "max_inflight": self.s.max_inflight,
                          "input": [w, h]})

    def _stats(self) -> dict[str, Any]:
        with self.stats_lock:
            b, n, ns, biggest = self.stats
        uptime = max(time.monotonic() - self.started, 1e-9)
        queued, running = self.queue.counts()
        return {
            "uptime_s": uptime, "batches": b, "images": n, "mean_batch": n / b if b else 0.0,
            "mean_infer_ms": ns / b / 1e6 if b else 0.0, "max_batch_seen": biggest,
            "inferences_per_s": b / uptime, "images_per_s": n / uptime, "workers": self.workers.count,
            "max_running": self.max_running, "running_jobs": self.queue.running_jobs(),
            "runs_batches": self.workers.batches,
            "queued": queued,
            "running": running,
            "cameras": {c.name: {"requests": c.requests, "images": c.images,
                                 "requests_per_s": c.requests / max(time.monotonic() - c.since, 1e-9)}
                        for c in self.cameras.values()},
        }

    # ------------------------------------------------------------------ jobs

    def _detect(self, cam: _Camera, msg: dict[str, Any]) -> None:
        """Queue a request with its frames, read from the camera's ring now (a worker takes it from there)."""
        if not self.queue.room(cam.lane):  # only a worker changes it now, and only to make room
            self._reply(cam, {"op": "result", "id": msg.get("id"),
                              "error": f"more than {self.s.max_inflight} requests in flight"})
            return
        frames = self._take(cam, msg)
        if frames is None:
            return
        cam.requests += 1
        if not self.queue.put(cam.lane, Waiting([f.array for f in frames], _Request(cam, msg, frames))):
            for f in frames:  # not reached: room() said yes and the loop's thread alone adds
                f.release()
            self._reply(cam, {"op": "result", "id": msg.get("id"), "error": "request not queued"})

    def _answer(self, done: Done) -> None:
        """Answer the requests of a finished job (in the worker's thread, as soon as it ends)."""
        taken: list[Taken] = done.job.tag
        n = len(done.job.images)
        with self.stats_lock:  # counted before any answer leaves: a stats request may follow it at once
            self.stats[0] += 1
            self.stats[1] += n
            self.stats[2] += done.infer_ns
            self.stats[3] = max(self.stats[3], n)
        i = 0
        for t in taken:
            req: _Request = t.item
            for f in req.frames:
                f.release()
            count = len(req.frames)
            reply: dict[str, Any] = {"op": "result", "id": req.msg["id"], "batch": n,
                                     "batch_no": done.job.number, "infer_ms": done.infer_ns / 1e6,
                                     "worker": done.worker}
            if done.error:
                reply["error"] = done.error
            else:
                reply["detections"] = [
                    [[d.label, d.label_id, d.score, *d.box] for d in dets]
                    for dets in done.results[i : i + count]
                ]
            i += count
            cam = req.cam
            with self.stats_lock:
                cam.images += count
            # lowered before the answer leaves: the camera's next request may arrive at once
            if self.queue.finished(cam.lane):
                self._close_ring(cam)  # gone, and this was its last request: nobody else holds the ring
                continue
            with cam.send_lock:
                if cam.gone:
                    continue
                try:
                    send(cam.conn, reply)
                except OSError as exc:
                    # the loop's thread drops it: shut down, its recv sees the end
                    log.info("detector %s: answer to camera %s failed (%s)", self.s.name, cam.name, exc)
                    with contextlib.suppress(OSError):
                        cam.conn.shutdown(socket.SHUT_RDWR)

    def _take(self, cam: _Camera, msg: dict[str, Any]) -> list[Any] | None:
        """The request's frames from the camera's ring (they must be the next ones)."""
        frames: list[Any] = []
        try:
            if cam.ring is None:
                raise ProtocolError("no hello before the request")
            count, last = int(msg["count"]), int(msg["last_seq"])
            if not 1 <= count <= cam.ring.max_held // MAX_INFLIGHT:
                raise ProtocolError(f"count {count} out of range")
            while len(frames) < count:
                frame = cam.ring.next(timeout=1.0)
                if frame.seq <= last - count:
                    frame.release()  # left over from a request that failed: skip to this one
                    continue
                frames.append(frame)
            if frames[-1].seq != last:
                raise ProtocolError(f"ring at {frames[-1].seq}, request says {last}")
        except (FramebusError, ProtocolError, KeyError, ValueError, TypeError) as exc:
            for f in frames:
                f.release()
            self._reply(cam, {"op": "result", "id": msg.get("id"), "error": f"bad request: {exc}"})
            return None
        return frames

    def close(self) -> None:
        for cam in list(self.cameras.values()):
            self._drop(cam, "detector stopping")
        self.listener.close()
        with contextlib.suppress(FileNotFoundError):
            socket_path(self.s.name).unlink()
        self.queue.close()
        self.workers.close()


def serve(settings: DetectorSettings) -> None:
    """Run a detector in this process until SIGTERM/SIGINT (the detector process's main)."""
    server = _Server(settings)

    def _stop(*_: object) -> None:
        server.stop = True

    signal.signal(signal.SIGTERM, _stop)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a supervised detector leaves it to the node
        signal.signal(signal.SIGINT, _stop)
    log.info("detector %s: serving model %s, %d worker(s) x %d thread(s), %d running at once%s (pid %d)",
             settings.name, settings.model.id, server.workers.count, settings.threads, server.max_running,
             ", real batches" if server.workers.batches else "", os.getpid())
    try:
        server.run()
    except WorkerDied as exc:
        log.error("detector %s: %s; exiting so that it is restarted", settings.name, exc)
        server.close()
        logging.shutdown()
        # leave at once: a dead worker may have left state that blocks an orderly interpreter exit
        os._exit(EXIT_WORKER_DIED)
    finally:
        server.close()


# ---------------------------------------------------------------------------
# entry point of a detector process (started and supervised by camfleet.runtime.detectors)


def detector_main(settings: DetectorSettings, parent_pid: int | None = None) -> None:
    """A detector process's main: die with ``parent_pid``, set up logging, serve until SIGTERM."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
        # supervised: a terminal's Ctrl-C is the node's to handle; it stops the cameras first, then us
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if settings.log_init is not None:
        settings.log_init()
    else:
        logging.basicConfig(level=logging.INFO)
    serve(settings)
