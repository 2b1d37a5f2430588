"""Live view: the newest frame of a camera's frame ring as a JPEG.

One subscriber per camera is opened on first use and shared by every viewer
(a ring has a bounded number of subscriber slots); a JPEG younger than
``max_age`` is served from the cache, so N viewers cost one encode. Reads
block: async callers use :meth:`LiveFrames.jpeg_async`, which runs them on a
small pool of its own, so live viewers never starve the other endpoints' threads.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from camfleet import framebus
from camfleet.framebus import PixelFormat

log = logging.getLogger("camfleet.api")


class NoFrame(Exception):
    """The camera has no frame to show (no ring yet, or none published within the timeout)."""


def _limited_to_full(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, ...]:
    """Video-range (BT.601 limited) planes to the full range JPEG's YCbCr expects."""
    yf = np.clip((y.astype(np.int32) - 16) * 255 // 219, 0, 255).astype(np.uint8)
    uf = np.clip((u.astype(np.int32) - 128) * 255 // 224 + 128, 0, 255).astype(np.uint8)
    vf = np.clip((v.astype(np.int32) - 128) * 255 // 224 + 128, 0, 255).astype(np.uint8)
    return yf, uf, vf


def frame_image(frame: framebus.Frame) -> Image.Image:
    """A private RGB/YCbCr Pillow image of ``frame`` (copied out of the ring)."""
    fmt = frame.format
    w, h = fmt.width, fmt.height
    pf = fmt.pixel_format
    if pf == PixelFormat.YUV420P:
        y, u, v = (np.ascontiguousarray(p) for p in frame.planes)
        frame.check()  # the copies are good only if the lease held
        u = u.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
        v = v.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
        yf, uf, vf = _limited_to_full(y[:h, :w], u, v)
        return Image.merge("YCbCr", [Image.fromarray(c, "L") for c in (yf, uf, vf)])
    if pf == PixelFormat.NV12:
        y, uv = (np.ascontiguousarray(p) for p in frame.planes)
        frame.check()
        uv = uv.reshape(uv.shape[0], -1, 2)
        u = uv[..., 0].repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
        v = uv[..., 1].repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
        yf, uf, vf = _limited_to_full(y[:h, :w], u, v)
        return Image.merge("YCbCr", [Image.fromarray(c, "L") for c in (yf, uf, vf)])
    arr = frame.to_numpy()
    if pf == PixelFormat.GRAY:
        return Image.fromarray(arr, "L")
    if pf == PixelFormat.BGR24:
        arr = arr[..., ::-1].copy()
    return Image.fromarray(arr, "RGB")


def encode_jpeg(image: Image.Image, quality: int = 80) -> bytes:
    """``image`` as JPEG bytes."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class _Cam:
    lock: threading.Lock
    sub: framebus.FrameSubscriber | None = None
    jpeg: bytes | None = None
    seq: int = 0
    at: float = 0.0
    used: float = 0.0


class LiveFrames:
    """Shared subscribers and a short JPEG cache, per camera."""

    def __init__(self, max_age: float = 0.1, idle_close_s: float = 30.0, quality: int = 80,
                 threads: int = 8, max_pending: int | None = None) -> None:
        self.max_age = max_age
        self.idle_close_s = idle_close_s
        self.quality = quality
        self._cams: dict[str, _Cam] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._name = f"api-{os.getpid()}-{id(self) & 0xFFFF:x}"
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="camfleet-live")
        # the pool's own queue is unbounded: past this many reads running or queued, a viewer gets
        # "busy" (503) at once instead of waiting behind everyone else's frames
        self._slots = threading.BoundedSemaphore(max_pending if max_pending is not None else threads * 4)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def _cam(self, camera: str) -> _Cam:
        with self._lock:
            if self._closed:
                raise NoFrame("the server is stopping")
            cam = self._cams.get(camera)
            if cam is None:
                cam = self._cams[camera] = _Cam(threading.Lock())
            return cam

    def jpeg(self, camera: str, timeout: float = 2.0, newer_than: int = 0) -> tuple[bytes, int]:
        """The newest frame of ``camera`` as JPEG, and its sequence number.

        ``newer_than``: wait (up to ``timeout``) for a frame with a higher sequence
        number (the MJPEG stream uses it so it never sends a frame twice).

        Raises:
            NoFrame: no ring for the camera, or no frame within ``timeout``.
        """
        cam = self._cam(camera)
        deadline = time.monotonic() + timeout
        if not cam.lock.acquire(timeout=timeout):
            raise NoFrame(f"camera {camera!r}: live view busy")
        try:
            now = time.monotonic()
            cam.used = now
            if cam.jpeg is not None and cam.seq > newer_than and now - cam.at < self.max_age:
                return cam.jpeg, cam.seq
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    if cam.sub is None:
                        cam.sub = framebus.subscribe(camera, mode="latest", name=self._name,
                                                     connect_timeout=min(left, 1.0))
                    with cam.sub.next(timeout=left) as frame:
                        image = frame_image(frame)
                        seq = frame.seq
                except framebus.FrameTimeout:
                    break
                except (framebus.NotFound, framebus.PublisherGone, framebus.LeaseRevoked, framebus.Evicted):
                    self._drop_sub(cam)  # the ring is (re)starting: subscribe again until the deadline
                    continue
                except framebus.FramebusError as exc:
                    self._drop_sub(cam)
                    raise NoFrame(f"camera {camera!r}: {type(exc).__name__}") from None
                cam.jpeg, cam.seq, cam.at = encode_jpeg(image, self.quality), seq, time.monotonic()
                return cam.jpeg, cam.seq
            if cam.jpeg is not None and cam.seq > newer_than:
                return cam.jpeg, cam.seq
            raise NoFrame(f"camera {camera!r} has no frame yet")
        finally:
            cam.lock.release()

    async def jpeg_async(self, camera: str, timeout: float = 2.0, newer_than: int = 0) -> tuple[bytes, int]:
        """:meth:`jpeg` on the live view's own bounded pool, never the default executor.

        The default executor serves ``/api/status`` and the other endpoints, so
        live viewers cannot starve them.

        Raises:
            NoFrame: as :meth:`jpeg`, or at once when the pool already has its maximum of reads pending.
        """
        if not self._slots.acquire(blocking=False):
            raise NoFrame("the live view is busy")
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._pool, self.jpeg, camera, timeout, newer_than)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._slots.release()
            raise NoFrame("the server is stopping") from None
        # released when the read really ends, even if this request was cancelled meanwhile
        future.add_done_callback(lambda _: self._slots.release())
        return await future

    @staticmethod
    def _drop_sub(cam: _Cam) -> None:
        if cam.sub is not None:
            try:
                cam.sub.close()
            except Exception:  # a dead ring: nothing left to release
                log.debug("closing a live-view subscriber failed", exc_info=True)
            cam.sub = None

    def close_idle(self) -> None:
        """Close the subscribers nobody asked for in ``idle_close_s`` (and of removed cameras)."""
        now = time.monotonic()
        with self._lock:
            items = list(self._cams.items())
        for name, cam in items:
            if now - cam.used > self.idle_close_s and cam.lock.acquire(blocking=False):
                try:
                    self._drop_sub(cam)
                    with self._lock:
                        if self._cams.get(name) is cam:
                            del self._cams[name]
                finally:
                    cam.lock.release()

    def close(self, timeout: float = 3.0) -> None:
        """Close every subscriber (waits up to ``timeout`` for reads in progress)."""
        with self._lock:
            self._closed = True
            cams = list(self._cams.values())
            self._cams.clear()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for cam in cams:
            got = cam.lock.acquire(timeout=timeout)
            try:
                self._drop_sub(cam)
            finally:
                if got:
                    cam.lock.release()
