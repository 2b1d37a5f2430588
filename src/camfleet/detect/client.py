"""A camera's end of the detector service: images into its request ring, answers over the socket.

:class:`DetectorClient` runs in each camera's pipeline process. ``detect``
sends one request and waits for its answer; ``submit`` / ``result`` keep up
to :data:`~camfleet.detect.protocol.MAX_INFLIGHT` requests in flight, so a
camera's rate is not capped by one round trip. Answers carry their request's
id and may arrive in any order (the detector runs several workers); each is
handed to the caller that asks for that id.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from camfleet.framebus import FrameFlags, FrameFormat, FramePublisher, InvalidFormat

from .protocol import (
    MAX_INFLIGHT,
    REQUEST_MAX_IMAGES,
    ProtocolError,
    Reader,
    request_ring_key,
    request_ring_slots,
    send,
    socket_path,
)
from .types import Box, Detection

CONNECT_GRACE_S = 5.0
"""Seconds a client waits for a detector that is starting (no socket yet, or nobody listening on it)."""

_STARTING = (errno.ENOENT, errno.ECONNREFUSED)  # a detector not yet (or no longer) listening


class DetectorFailed(Exception):
    """A detection request could not be answered (detector down, restarted or stuck)."""


def _detections(raw: list[list[Any]]) -> list[list[Detection]]:
    return [[Detection(str(d[0]), int(d[1]), float(d[2]), Box(d[3], d[4], d[5], d[6])) for d in dets]
            for dets in raw]


class DetectorClient:
    """A camera's connection to a detector: ``detect(images)`` returns their detections.

    Images must be ``HxWx3`` uint8 RGB at ``input_size`` (the model's input
    size, in pixels); they are copied once into the camera's request ring.
    ``timeout``: seconds to wait for one answer; ``connect_grace``: seconds to
    wait for a detector that is starting or restarting before a request fails.
    The client reconnects by itself after the detector restarts.
    """

    def __init__(self, detector: str, camera: str, input_size: tuple[int, int],
                 *, max_images: int = REQUEST_MAX_IMAGES, timeout: float = 10.0,
                 connect_grace: float = CONNECT_GRACE_S) -> None:
        self.detector = detector
        self.camera = camera
        self.input_size = input_size
        self.timeout = timeout
        self.connect_grace = connect_grace
        self.max_images = max_images
        key = request_ring_key(camera, detector)
        fmt = FrameFormat.packed_format(input_size[0], input_size[1], "rgb24")
        self._ring = FramePublisher(key, fmt, slots=request_ring_slots(max_images))
        self._key = key
        self._sock: socket.socket | None = None
        self._reader = Reader()
        self._next_id = 0
        self._lock = threading.RLock()
        self._pending: dict[int, int] = {}  # request id -> images, sent and not answered
        self._answers: dict[int, dict[str, Any]] = {}  # answered, not yet collected
        self._lost: dict[int, str] = {}  # request id -> why it will never be answered
        self._stats: dict[str, Any] | None = None
        self.last_batch = 0
        self.last_infer_ms = 0.0
        self.requests = 0
        self.images_sent = 0
        self.infer_ms_total = 0.0

    # ------------------------------------------------------------------ connection

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        path = socket_path(self.detector)
        deadline = time.monotonic() + self.connect_grace
        delay = 0.01
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(path))
                break
            except OSError as exc:
                sock.close()
                # starting: the socket is not there yet, or a killed detector's is and nobody listens
                if exc.errno not in _STARTING or time.monotonic() + delay > deadline:
                    waited = f" (waited {self.connect_grace:g} s)" if exc.errno in _STARTING else ""
                    raise DetectorFailed(
                        f"detector {self.detector!r} is not reachable at {path}: {exc}{waited}"
                    ) from None
                time.sleep(delay)  # nothing to wait on until the detector listens
                delay = min(delay * 2, 0.2)
        try:
            send(sock, {"op": "hello", "camera": self.camera, "ring": self._key,
                        "max_images": self.max_images})
            reply = self._read_one(sock)
        except (OSError, ProtocolError) as exc:
            sock.close()
            self._reader = Reader()
            raise DetectorFailed(f"detector {self.detector!r} is not reachable at {path}: {exc}") from None
        if reply.get("op") != "welcome":
            sock.close()
            self._reader = Reader()
            raise DetectorFailed(f"detector {self.detector!r} refused camera {self.camera!r}: {reply}")
        self._sock = sock
        return sock

    def _read_one(self, sock: socket.socket) -> dict[str, Any]:
        """The next message (used only during the hello, before any request is pending)."""
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("detector closed the connection")
            msgs = self._reader.feed(data)
            if msgs:
                return msgs[0]

    def _disconnect(self, why: str | None = None) -> None:
        """Close the connection; the requests still pending are lost (``why`` says how)."""
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._reader = Reader()
        for rid in self._pending:
            self._lost[rid] = why or "the connection was closed"
        self._pending.clear()

    def _pump(self) -> None:
        """Read at least one message from the detector and file it; DetectorFailed if the link breaks."""
        sock = self._sock
        if sock is None:
            raise DetectorFailed(f"detector {self.detector!r}: not connected")
        try:
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("detector closed the connection")
            msgs = self._reader.feed(data)
        except (OSError, ProtocolError) as exc:
            pending = sorted(self._pending)
            why = (f"detector {self.detector!r} failed while request(s) {', '.join(map(str, pending))} of "
                   f"camera {self.camera!r} were pending ({exc}); it is being restarted")
            if len(pending) == 1:
                why = (f"detector {self.detector!r} failed while request {pending[0]} of camera "
                       f"{self.camera!r} was pending ({exc}); it is being restarted")
            self._disconnect(why)
            raise DetectorFailed(why) from None
        for msg in msgs:
            op = msg.get("op")
            if op == "result" and isinstance(msg.get("id"), int) and msg["id"] in self._pending:
                del self._pending[msg["id"]]
                self._answers[msg["id"]] = msg
            elif op == "stats":
                self._stats = msg
            # anything else (an answer to a request already given up) is dropped

    # ------------------------------------------------------------------ requests

    @property
    def inflight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    def submit(self, images: Sequence[np.ndarray]) -> int:
        """Send a request for ``images`` without waiting for the answer; returns its id for :meth:`result`.

        When :data:`~camfleet.detect.protocol.MAX_INFLIGHT` requests are already
        in flight, waits for the oldest's answer first (the request ring holds
        that many requests' images). Raises :class:`DetectorFailed`.
        """

        def copy(i: int, dst: np.ndarray) -> None:
            img = images[i]
            if img.shape != dst.shape or img.dtype != dst.dtype:
                raise InvalidFormat(f"camera {self.camera!r}: image {i} is {img.shape} {img.dtype}; the "
                                    f"detector takes {dst.shape} {dst.dtype} (RGB at its input size)")
            np.copyto(dst, img, casting="no")

        return self.submit_into(len(images), copy)

    def submit_into(self, count: int, fill: Callable[[int, np.ndarray], None]) -> int:
        """Like :meth:`submit`, for ``count`` images that ``fill(i, dst)`` writes into the request ring.

        ``dst`` is image ``i``'s ``HxWx3`` uint8 RGB slot at :attr:`input_size`, in shared
        memory: writing the model input there saves making it elsewhere and copying it.
        A ``fill`` that raises sends nothing (the error propagates; the slots it had are skipped).
        """
        if count < 1:
            raise ValueError("submit() needs at least one image")
        if count > self.max_images:
            raise DetectorFailed(f"camera {self.camera!r}: {count} images in one request; "
                                 f"the request ring takes {self.max_images}")
        with self._lock:
            sock = self._connect()
            while len(self._pending) >= MAX_INFLIGHT:
                self._pump()
            seq = 0
            for i in range(count):
                slot = self._ring.begin()
                try:
                    fill(i, slot.array)
                except BaseException:
                    # the detector skips this slot: it reads only the ``count`` frames up to ``last_seq``
                    self._ring.commit(flags=FrameFlags.CORRUPT)
                    raise
                seq = self._ring.commit()
            self._next_id += 1
            rid = self._next_id
            try:
                send(sock, {"op": "detect", "id": rid, "count": count, "last_seq": seq})
            except OSError as exc:
                why = (f"detector {self.detector!r} failed while request {rid} of camera "
                       f"{self.camera!r} was sent ({exc}); it is being restarted")
                self._disconnect(why)
                raise DetectorFailed(why) from None
            self._pending[rid] = count
            return rid

    def result(self, rid: int) -> list[list[Detection]]:
        """Wait for request ``rid``'s answer: one detection list per image; :class:`DetectorFailed`."""
        with self._lock:
            while rid not in self._answers:
                if rid in self._lost:
                    raise DetectorFailed(self._lost.pop(rid))
                if rid not in self._pending:
                    raise KeyError(f"camera {self.camera!r}: no request {rid} is pending")
                self._pump()
            reply = self._answers.pop(rid)
            if reply.get("error"):
                raise DetectorFailed(f"detector {self.detector!r}: {reply['error']}")
            self.last_batch = int(reply.get("batch", 0))
            self.last_infer_ms = float(reply.get("infer_ms", 0.0))
            self.requests += 1
            self.images_sent += len(reply["detections"])
            self.infer_ms_total += self.last_infer_ms
            return _detections(reply["detections"])

    def ready(self, rid: int, timeout: float = 0.0) -> bool:
        """Whether :meth:`result` for ``rid`` would return (or raise) without waiting for the detector.

        Waits up to ``timeout`` s for its answer (0: only looks at what has arrived).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while rid in self._pending and self._sock is not None:
                readable, _, _ = select.select([self._sock], [], [], max(deadline - time.monotonic(), 0.0))
                if not readable:
                    break
                try:
                    self._pump()
                except DetectorFailed:
                    break  # rid is lost now: result() raises
            return rid not in self._pending

    def cancel(self, rid: int) -> None:
        """Forget request ``rid`` (its answer, if it comes, is dropped)."""
        with self._lock:
            self._answers.pop(rid, None)
            self._lost.pop(rid, None)

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detect objects in each image; raises :class:`DetectorFailed` with the reason."""
        if not images:
            return []
        with self._lock:
            return self.result(self.submit(images))

    def stats(self) -> dict[str, Any]:
        """The detector's counters (batches, mean batch, inference ms, per camera)."""
        with self._lock:
            sock = self._connect()
            self._stats = None
            send(sock, {"op": "stats"})
            while self._stats is None:
                self._pump()
            return self._stats

    def close(self) -> None:
        """Disconnect and remove the request ring."""
        with self._lock:
            self._disconnect()
            self._lost.clear()
            self._answers.clear()
            self._ring.close()
