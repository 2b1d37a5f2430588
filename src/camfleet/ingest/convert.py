"""Decoded frames into ring slots: pixel format conversion, scaling, frame-rate limiting.

Conversion happens on the publisher side, once, so no consumer has to.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from camfleet.framebus import FrameFormat, PixelFormat, WritableFrame


@dataclass(frozen=True)
class OutputSpec:
    """What the frame ring carries.

    ``width``/``height`` scale every frame (None keeps the camera's size);
    ``fps`` limits the published rate (None publishes every decoded frame).
    """

    pixel_format: PixelFormat = PixelFormat.YUV420P
    width: int | None = None
    height: int | None = None
    fps: float | None = None

    def ring_format(self, source_width: int, source_height: int) -> FrameFormat:
        """The ring's frame format for a camera of the given size (even sizes for 4:2:0)."""
        w = self.width or source_width
        h = self.height or source_height
        if self.pixel_format in (PixelFormat.YUV420P, PixelFormat.NV12):
            w, h = w - w % 2, h - h % 2
        return FrameFormat.packed_format(max(w, 2), max(h, 2), self.pixel_format)


def _plane_view(plane: av.video.plane.VideoPlane, rows: int, cols: int) -> np.ndarray:
    """A zero-copy (rows, cols) uint8 view of a decoded plane (its rows are ``line_size`` apart)."""
    buf = np.frombuffer(memoryview(plane), np.uint8)
    return buf[: rows * plane.line_size].reshape(rows, plane.line_size)[:, :cols]


class FrameConverter:
    """Writes PyAV frames into ring slots in the ring's format, in one pass.

    When the decoder already produces the ring's pixel format (the common case:
    H.264/H.265 cameras decode to yuv420p, the ring's default),
    each plane is scaled by OpenCV straight from the decoder's buffer into the
    slot: no intermediate frame, no second copy (about 6x less CPU than
    swscale to a new frame plus a copy at 720p -> 360p). Other layouts go
    through one reused swscale context, then one copy.
    """

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def write(self, frame: av.VideoFrame, fmt: FrameFormat, dst: WritableFrame) -> None:
        """Convert/scale ``frame`` to ``fmt`` into ``dst``."""
        name = fmt.pixel_format.ffmpeg_name
        src_name = frame.format.name
        if src_name == name:  # not gray from yuv: swscale expands the video range there
            self._scale_planes(frame, fmt, dst)
            return
        if frame.width != fmt.width or frame.height != fmt.height or src_name != name:
            frame = self._reformatter.reformat(
                frame, width=fmt.width, height=fmt.height, format=name, interpolation="BILINEAR"
            )
        for plane, geometry, out in zip(frame.planes, fmt.planes, dst.planes, strict=True):
            row_bytes = int(np.prod(geometry.shape[1:]))
            src = _plane_view(plane, geometry.rows, row_bytes)
            np.copyto(out, src.reshape(geometry.shape))

    @staticmethod
    def _scale_planes(frame: av.VideoFrame, fmt: FrameFormat, dst: WritableFrame) -> None:
        """Same layout on both sides: copy or scale plane by plane into the slot's views."""
        for plane, geometry, out in zip(frame.planes, fmt.planes, dst.planes, strict=False):
            row_bytes = int(np.prod(geometry.shape[1:]))
            items = row_bytes // geometry.shape[1]  # bytes per pixel of this plane (1; 3 for bgr24)
            src = _plane_view(plane, plane.height, plane.width * items)
            if src.shape == out.shape[:2] and items == 1:
                np.copyto(out, src)
                continue
            if items != 1:
                src = src.reshape(plane.height, plane.width, items)
                if src.shape == out.shape:
                    np.copyto(out, src)
                    continue
            shrink = out.shape[0] <= src.shape[0] and out.shape[1] <= src.shape[1]
            res = cv2.resize(src, (out.shape[1], out.shape[0]), dst=out,
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            if not np.shares_memory(res, out):  # OpenCV could not write through this view
                np.copyto(out, res)


class RateLimiter:
    """Keeps at most ``fps`` frames per second of stream time (None keeps all).

    Frames are chosen on a fixed grid of 1/fps, so the kept rate is exact over
    time whatever the camera's rate is.
    """

    def __init__(self, fps: float | None) -> None:
        self._period = 1.0 / fps if fps else 0.0
        self._next: float | None = None

    def keep(self, t: float) -> bool:
        """True if the frame at stream time ``t`` (seconds) is to be published."""
        if not self._period:
            return True
        if self._next is None or t < self._next - 10 * self._period or t > self._next + 10:
            self._next = t  # first frame, or the clock jumped: re-anchor
        if t + 1e-6 < self._next:
            return False
        self._next += self._period
        if self._next <= t:
            self._next = t + self._period
        return True
