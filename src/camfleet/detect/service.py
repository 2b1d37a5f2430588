"""The detector service: one process per detector, shared by every camera of a node.

* **Transport.** Each camera client owns a request ring (framebus) carrying its
  images at the model's input size; a Unix socket carries small JSON control
  messages (which ring sequence numbers to detect, and the detections back).
  Images are never pickled or copied through a pipe.
* **Batching.** Requests from all cameras are gathered until ``max_batch``
  images are waiting or the oldest has waited ``max_wait_ms``, then run as one
  batch.
* **Fairness.** Batches are filled round-robin, one request per camera at a
  time, and each camera may have at most ``max_inflight`` requests queued, so a
  busy camera cannot starve the others.
* **Health.** The service beats a heartbeat file (:func:`read_heartbeat`);
  the node's supervisor (:mod:`camfleet.runtime.detectors`) restarts it when
  it dies or when one inference has been stuck longer than ``stuck_s``.
  Clients waiting on a dead detector get :class:`DetectorFailed` at once
  (their socket closes) and reconnect on their next request.

The module is a little over 500 lines because the server (:func:`serve`) and
the client (:class:`DetectorClient`) are the two ends of one request-ring and
socket protocol, kept side by side so that a change to one is made with the
other.
"""

from __future__ import annotations

import collections
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from camfleet.framebus import (
    FramebusError,
    FrameFormat,
    FramePublisher,
    FrameSubscriber,
    shm_dir,
    subscribe,
)
from camfleet.framebus.layout import validate_key
from camfleet.framebus.segment import create_private_file
from camfleet.procutil import die_with_parent

from .models import ModelSpec
from .protocol import (
    REQUEST_MAX_IMAGES,
    ProtocolError,
    Reader,
    listen,
    request_ring_key,
    request_ring_slots,
    send,
    socket_path,
)
from .types import Box, Detection

log = logging.getLogger("camfleet.detect")

_HB = struct.Struct("<qqqqqqqq")  # beat, busy_since, pid, batches, images, infer_ns, queued, max_batch_seen


class DetectorFailed(Exception):
    """A detection request could not be answered (detector down, restarted or stuck)."""


@dataclass(frozen=True)
class DetectorSettings:
    """One detector process.

    Attributes:
        name: detector name (``[A-Za-z0-9_-]``), also its socket's name.
        model: the model to load.
        threads: CPU threads for inference.
        max_batch: most images in one inference.
        max_wait_ms: longest a request waits for a batch to fill, milliseconds.
        max_inflight: requests one camera may have queued at once.
        stuck_s: an inference running longer than this is stuck (the supervisor restarts it), seconds.
        factory: ``"module:function"`` building the runtime from ``(spec, threads)``
            (default: :func:`camfleet.detect.runtime.load_runtime`).
        log_init: called first in the detector process to set up its logging
            (a picklable callable; default: plain stderr logging).
    """

    name: str
    model: ModelSpec
    threads: int = 1
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_inflight: int = 2
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
    """The detector's last heartbeat, or None if it never started."""
    try:
        raw = heartbeat_path(detector).read_bytes()[: _HB.size]
    except FileNotFoundError:
        return None
    if len(raw) < _HB.size:
        return None
    return Heartbeat(*_HB.unpack(raw))


# ---------------------------------------------------------------------------
# server (runs in the detector process)


@dataclass
class _Camera:
    conn: socket.socket
    reader: Reader = field(default_factory=Reader)
    name: str = ""
    ring: FrameSubscriber | None = None
    queue: collections.deque[dict[str, Any]] = field(default_factory=collections.deque)
    requests: int = 0
    images: int = 0
    since: float = field(default_factory=time.monotonic)


def _load_factory(path: str) -> Callable[[ModelSpec, int], Any]:
    module, _, func = path.partition(":")
    factory = getattr(importlib.import_module(module), func)
    if not callable(factory):
        raise TypeError(f"detector factory {path!r} is not callable")
    return factory  # type: ignore[no-any-return]


class _Server:
    def __init__(self, settings: DetectorSettings) -> None:
        self.s = settings
        self.runtime = _load_factory(settings.factory)(settings.model, settings.threads)
        hb = heartbeat_path(settings.name)
        fd = create_private_file(hb, mmap.PAGESIZE)  # never follows a name planted in /dev/shm
        self._hb = mmap.mmap(fd, mmap.PAGESIZE)
        os.close(fd)
        self.stats = [0, 0, 0, 0]  # batches, images, infer_ns, max batch seen
        self.busy_since = 0
        self.listener = listen(socket_path(settings.name))
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.cameras: dict[socket.socket, _Camera] = {}
        self.rr = 0
        self.stop = False
        self.started = time.monotonic()
        self.beat()

    def beat(self) -> None:
        queued = sum(len(c.queue) for c in self.cameras.values())
        self._hb[: _HB.size] = _HB.pack(
            time.monotonic_ns(), self.busy_since, os.getpid(), self.stats[0], self.stats[1],
            self.stats[2], queued, self.stats[3],
        )

    def run(self) -> None:
        while not self.stop:
            wait = self._batch_wait()
            for key, _ in self.sel.select(timeout=wait):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.data)
            self.beat()
            if self._batch_due():
                self._run_batch()

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = self.listener.accept()
            conn.setblocking(True)
            cam = _Camera(conn)
            self.cameras[conn] = cam
            self.sel.register(conn, selectors.EVENT_READ, cam)

    def _drop(self, cam: _Camera, why: str) -> None:
        log.info("detector %s: camera %s disconnected (%s)", self.s.name, cam.name or "?", why)
        self.sel.unregister(cam.conn)
        self.cameras.pop(cam.conn, None)
        cam.conn.close()
        if cam.ring is not None:
            cam.ring.close()

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
            self._handle(cam, msg)

    def _reply(self, cam: _Camera, msg: dict[str, Any]) -> None:
        try:
            send(cam.conn, msg)
        except OSError as exc:
            self._drop(cam, str(exc))

    def _handle(self, cam: _Camera, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "hello":
            cam.name = str(msg.get("camera", ""))
            try:
                cam.ring = subscribe(
                    str(msg["ring"]), mode="sequential", name=f"detector-{self.s.name}",
                    max_held=self.s.max_batch, connect_timeout=2.0,
                )
            except (FramebusError, KeyError) as exc:
                self._reply(cam, {"op": "error", "error": f"cannot read request ring: {exc}"})
                return
            w, h = self.runtime.input_size if hasattr(self.runtime, "input_size") else (0, 0)
            self._reply(cam, {"op": "welcome", "max_batch": self.s.max_batch,
                              "max_inflight": self.s.max_inflight, "input": [w, h]})
        elif op == "detect":
            if len(cam.queue) >= self.s.max_inflight:
                self._reply(cam, {"op": "result", "id": msg.get("id"),
                                  "error": f"more than {self.s.max_inflight} requests in flight"})
                return
            msg["t"] = time.monotonic()
            cam.queue.append(msg)
            cam.requests += 1
        elif op == "stats":
            self._reply(cam, {"op": "stats", **self._stats()})
        else:
            self._reply(cam, {"op": "error", "error": f"unknown op {op!r}"})

    def _stats(self) -> dict[str, Any]:
        b, n, ns, biggest = self.stats
        uptime = max(time.monotonic() - self.started, 1e-9)
        return {
            "uptime_s": uptime, "batches": b, "images": n, "mean_batch": n / b if b else 0.0,
            "mean_infer_ms": ns / b / 1e6 if b else 0.0, "max_batch_seen": biggest,
            "inferences_per_s": b / uptime, "images_per_s": n / uptime,
            "queued": sum(len(c.queue) for c in self.cameras.values()),
            "cameras": {c.name: {"requests": c.requests, "images": c.images,
                                 "requests_per_s": c.requests / max(time.monotonic() - c.since, 1e-9)}
                        for c in self.cameras.values()},
        }

    def _pending(self) -> list[_Camera]:
        return [c for c in self.cameras.values() if c.queue]

    def _batch_wait(self) -> float:
        pending = self._pending()
        if not pending:
            return 0.5  # heartbeat period while idle
        oldest = min(float(c.queue[0]["t"]) for c in pending)
        return max(0.0, oldest + self.s.max_wait_ms / 1000 - time.monotonic())

    def _batch_due(self) -> bool:
        pending = self._pending()
        if not pending:
            return False
        images = sum(int(m["count"]) for c in pending for m in c.queue)
        oldest = min(c.queue[0]["t"] for c in pending)
        return images >= self.s.max_batch or time.monotonic() - oldest >= self.s.max_wait_ms / 1000

    def _run_batch(self) -> None:
        # round-robin: one request per camera per turn, starting after the last served
        cams = list(self.cameras.values())
        if not cams:
            return
        order = cams[self.rr % len(cams):] + cams[: self.rr % len(cams)]
        self.rr += 1
        chosen: list[tuple[_Camera, dict[str, Any], list[Any]]] = []
        total = 0
        progress = True
        while progress and total < self.s.max_batch:
            progress = False
            for cam in order:
                if not cam.queue or (total + int(cam.queue[0]["count"]) > self.s.max_batch and chosen):
                    continue
                msg = cam.queue.popleft()
                frames = self._take(cam, msg)
                if frames is None:
                    continue
                chosen.append((cam, msg, frames))
                total += len(frames)
                progress = True
                if total >= self.s.max_batch:
                    break
        if not chosen:
            return
        images = [f.array for _, _, frames in chosen for f in frames]
        self.busy_since = time.monotonic_ns()
        self.beat()
        t0 = time.perf_counter_ns()
        try:
            results = self.runtime.infer(images)
            error = None
        except Exception as exc:
            log.exception("detector %s: inference failed", self.s.name)
            results, error = [], f"inference failed: {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter_ns() - t0
        self.busy_since = 0
        self.stats[0] += 1
        self.stats[1] += len(images)
        self.stats[2] += elapsed
        self.stats[3] = max(self.stats[3], len(images))
        i = 0
        for cam, msg, frames in chosen:
            for f in frames:
                f.release()
            reply: dict[str, Any] = {"op": "result", "id": msg["id"], "batch": len(images),
                                     "batch_no": self.stats[0], "infer_ms": elapsed / 1e6}
            if error:
                reply["error"] = error
            else:
                reply["detections"] = [
                    [[d.label, d.label_id, d.score, *d.box] for d in dets]
                    for dets in results[i : i + len(frames)]
                ]
            i += len(frames)
            cam.images += len(frames)
            self._reply(cam, reply)

    def _take(self, cam: _Camera, msg: dict[str, Any]) -> list[Any] | None:
        """The request's frames from the camera's ring (they must be the next ones)."""
        frames: list[Any] = []
        try:
            assert cam.ring is not None
            count, last = int(msg["count"]), int(msg["last_seq"])
            while len(frames) < count:
                frame = cam.ring.next(timeout=1.0)
                if frame.seq <= last - count:
                    frame.release()  # left over from a request that failed: skip to this one
                    continue
                frames.append(frame)
            if frames[-1].seq != last:
                raise ProtocolError(f"ring at {frames[-1].seq}, request says {last}")
        except (FramebusError, ProtocolError, AssertionError, KeyError, ValueError) as exc:
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
        if hasattr(self.runtime, "close"):
            self.runtime.close()


def serve(settings: DetectorSettings) -> None:
    """Run a detector in this process until SIGTERM/SIGINT (the detector process's main)."""
    server = _Server(settings)

    def _stop(*_: object) -> None:
        server.stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("detector %s: serving model %s (pid %d)", settings.name, settings.model.id, os.getpid())
    try:
        server.run()
    finally:
        server.close()


# ---------------------------------------------------------------------------
# client (runs in each camera's pipeline process)


class DetectorClient:
    """A camera's connection to a detector: ``detect(images)`` returns their detections.

    Images must be ``HxWx3`` uint8 RGB at ``input_size`` (the model's input
    size, in pixels); they are copied once into the camera's request ring.
    The client reconnects by itself after the detector restarts.
    """

    def __init__(self, detector: str, camera: str, input_size: tuple[int, int],
                 *, max_images: int = REQUEST_MAX_IMAGES, timeout: float = 10.0) -> None:
        self.detector = detector
        self.camera = camera
        self.input_size = input_size
        self.timeout = timeout
        key = request_ring_key(camera, detector)
        fmt = FrameFormat.packed_format(input_size[0], input_size[1], "rgb24")
        self._ring = FramePublisher(key, fmt, slots=request_ring_slots(max_images))
        self._key = key
        self._sock: socket.socket | None = None
        self._reader = Reader()
        self._next_id = 0
        self._lock = threading.Lock()
        self.last_batch = 0
        self.last_infer_ms = 0.0
        self.requests = 0
        self.images_sent = 0
        self.infer_ms_total = 0.0

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        path = socket_path(self.detector)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(path))
            send(sock, {"op": "hello", "camera": self.camera, "ring": self._key})
            reply = self._recv(sock)
        except OSError as exc:
            sock.close()
            raise DetectorFailed(f"detector {self.detector!r} is not reachable at {path}: {exc}") from None
        if reply.get("op") != "welcome":
            sock.close()
            raise DetectorFailed(f"detector {self.detector!r} refused camera {self.camera!r}: {reply}")
        self._sock = sock
        return sock

    def _recv(self, sock: socket.socket) -> dict[str, Any]:
        while True:
            for msg in self._reader.feed(b""):
                return msg
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("detector closed the connection")
            msgs = self._reader.feed(data)
            if msgs:
                # one request in flight per client: at most one reply is pending
                return msgs[0]

    def _disconnect(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._reader = Reader()

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect objects in each image; raises :class:`DetectorFailed` with the reason."""
        if not images:
            return []
        with self._lock:
            try:
                sock = self._connect()
            except DetectorFailed:
                raise
            seq = 0
            for img in images:
                seq = self._ring.publish(img)
            self._next_id += 1
            rid = self._next_id
            try:
                send(sock, {"op": "detect", "id": rid, "count": len(images), "last_seq": seq})
                reply = self._recv(sock)
            except (OSError, ProtocolError) as exc:
                self._disconnect()
                raise DetectorFailed(
                    f"detector {self.detector!r} failed while request {rid} of camera "
                    f"{self.camera!r} was pending ({exc}); it is being restarted"
                ) from None
            if reply.get("error"):
                raise DetectorFailed(f"detector {self.detector!r}: {reply['error']}")
            self.last_batch = int(reply.get("batch", 0))
            self.last_infer_ms = float(reply.get("infer_ms", 0.0))
            self.requests += 1
            self.images_sent += len(images)
            self.infer_ms_total += self.last_infer_ms
            return [
                [Detection(str(d[0]), int(d[1]), float(d[2]), Box(d[3], d[4], d[5], d[6])) for d in dets]
                for dets in reply["detections"]
            ]

    def stats(self) -> dict[str, Any]:
        """The detector's counters (batches, mean batch, inference ms, per camera)."""
        with self._lock:
            sock = self._connect()
            send(sock, {"op": "stats"})
            return self._recv(sock)

    def close(self) -> None:
        """Disconnect and remove the request ring."""
        self._disconnect()
        self._ring.close()


# ---------------------------------------------------------------------------
# entry point of a detector process (started and supervised by camfleet.runtime.detectors)


def detector_main(settings: DetectorSettings, parent_pid: int | None = None) -> None:
    """A detector process's main: die with ``parent_pid``, set up logging, serve until SIGTERM."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    if settings.log_init is not None:
        settings.log_init()
    else:
        logging.basicConfig(level=logging.INFO)
    serve(settings)
