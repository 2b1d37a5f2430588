"""What flows through a pipeline: one frame and what the elements found in it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import cv2
import numpy as np

from camfleet.framebus import PixelFormat
from camfleet.vocabulary import Box, Detection

__all__ = ["SCORE_HISTORY", "Box", "Detection", "FrameContext", "TrackedObject", "ZoneChange", "ZoneEvent",
           "to_rgb"]


@dataclass
class TrackedObject:
    """An object followed across frames; times are wall-clock ns since the epoch.

    ``stationary`` is set when its box has barely moved for the track
    element's ``stationary_s``; ``scores`` holds its latest detection scores, oldest
    first (at most :data:`SCORE_HISTORY`), for rules such as the events element's
    confirmation.
    """

    track_id: int
    label: str
    score: float
    box: Box
    first_ns: int
    last_ns: int
    frames: int = 1
    top_score: float = 0.0
    best_seq: int = 0
    stationary: bool = False
    zones: set[str] = field(default_factory=set)
    ended: bool = False
    scores: list[float] = field(default_factory=list)
    velocity: tuple[float, float] = (0.0, 0.0)
    """How fast its box centre moves, ``(vx, vy)`` in pixels per second (smoothed)."""


SCORE_HISTORY = 10
"""How many of a track's latest scores :attr:`TrackedObject.scores` keeps (as Frigate does)."""


class ZoneChange(enum.Enum):
    """What an object did with a zone."""

    ENTER = "enter"
    EXIT = "exit"
    DWELL = "dwell"


@dataclass(frozen=True)
class ZoneEvent:
    """``track_id`` entered, left, or has dwelt ``dwell_s`` seconds in ``zone``."""

    zone: str
    track_id: int
    label: str
    change: ZoneChange
    time_ns: int
    dwell_s: float = 0.0


@dataclass
class FrameContext:
    """One frame on its way through a camera's pipeline.

    ``image`` is the frame's zero-copy view in the ring's format (valid while
    the pipeline processes the frame). Elements fill ``motion``,
    ``detections``, ``tracks``, ``zone_events``, ``events`` and ``seen`` in order.
    """

    camera: str
    seq: int
    pts: int
    capture_ns: int
    width: int
    height: int
    pixel_format: PixelFormat
    image: np.ndarray
    motion: list[Box] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    tracks: list[TrackedObject] = field(default_factory=list)
    zone_events: list[ZoneEvent] = field(default_factory=list)
    events: list[object] = field(default_factory=list)
    """:class:`~camfleet.pipeline.events.EventUpdate` s (what leaves the camera), and whatever
    plugin elements note for each other (documented plugin API: they stay in the process)."""
    seen: dict[str, float] = field(default_factory=dict)
    """Open events' last sighting: event id -> epoch seconds (filled by the events element)."""
    _rgb: np.ndarray | None = None

    def luma(self) -> np.ndarray:
        """The HxW luma (or gray) plane; zero-copy for gray, yuv420p and nv12."""
        if self.pixel_format in (PixelFormat.GRAY,):
            return self.image
        if self.pixel_format in (PixelFormat.YUV420P, PixelFormat.NV12):
            return self.image[: self.height]
        rgb = self.rgb()
        return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.uint8)

    def rgb(self) -> np.ndarray:
        """An HxWx3 RGB copy of the frame (computed once per frame)."""
        if self._rgb is None:
            self._rgb = to_rgb(self.image, self.pixel_format, self.width, self.height)
        return self._rgb


def to_rgb(image: np.ndarray, pix: PixelFormat, width: int, height: int) -> np.ndarray:
    """Convert a ring frame's primary array to HxWx3 RGB (a new array)."""
    if pix == PixelFormat.RGB24:
        return np.array(image)
    if pix == PixelFormat.BGR24:
        return np.array(image[..., ::-1])
    if pix == PixelFormat.GRAY:
        return np.repeat(image[..., None], 3, axis=2)
    # OpenCV's SIMD conversion (BT.601, video range): 25x faster than the same arithmetic in numpy
    code = cv2.COLOR_YUV2RGB_I420 if pix == PixelFormat.YUV420P else cv2.COLOR_YUV2RGB_NV12
    out: np.ndarray = cv2.cvtColor(image[: height * 3 // 2], code)
    return out
