"""Decoded frames into ring slots: pixel format conversion, scaling, frame-rate limiting.

Conversion happens on the publisher side, once, so no consumer has to.
"""

from __future__ import annotations

from dataclasses import dataclass

import av
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


class FrameConverter:
    """Writes PyAV frames into ring slots in the ring's format, reusing one scaler."""

    def __init__(self) -> None:
        self._reformatter = VideoReformatter()

    def write(self, frame: av.VideoFrame, fmt: FrameFormat, dst: WritableFrame) -> None:
        """Convert/scale ``frame`` to ``fmt`` and copy it into ``dst`` (one copy)."""
        name = fmt.pixel_format.ffmpeg_name
        if frame.width != fmt.width or frame.height != fmt.height or frame.format.name != name:
            frame = self._reformatter.reformat(
                frame, width=fmt.width, height=fmt.height, format=name, interpolation="BILINEAR"
            )
        for plane, geometry, out in zip(frame.planes, fmt.planes, dst.planes, strict=True):
            rows = geometry.rows
            row_bytes = int(np.prod(geometry.shape[1:]))
            src = np.frombuffer(memoryview(plane), np.uint8)
            src = src[: rows * plane.line_size].reshape(rows, plane.line_size)[:, :row_bytes]
            np.copyto(out, src.reshape(geometry.shape))


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
