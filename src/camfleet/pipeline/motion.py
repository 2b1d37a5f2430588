"""``motion``: frame differencing on a downscaled luma plane.

A running-average background is compared with each frame; changed pixels
outside the masks are grown a little, grouped into connected regions, and
regions smaller than ``min_area`` (fraction of the frame) are dropped. When
more than ``recalibrate`` of the picture changes at once (lights switched,
camera switched to night mode) the background is reset instead of reporting
the whole frame as motion.

An object that leaves (or a picture that switches from busy to empty at once)
leaves its trail in the running average: a ghost that fades over a second or
two and would keep the detector busy on an empty scene. When the detect element
reports that it looked at a motion box and found nothing there
(:data:`~camfleet.pipeline.element.EMPTY_MOTION_BOXES`), the pixels of that box
that have not changed since the previous frame are taken into the background at
once; what moves in it is left alone, and so is everything where the detector
found an object (a stopped person stays motion as before).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import Field

from .context import Box, FrameContext
from .element import EMPTY_MOTION_BOXES, Element, ElementConfig, PipelineEnv
from .geometry import mask_image

_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
"""4-connected growth, one pixel per iteration."""

_STILL_FRACTION = 0.02
"""Most of an empty motion box (fraction of its pixels) that may have changed since the previous
frame for it to count as still (a ghost, not something moving)."""

FRIGATE_MOTION_ROWS = 100
"""Rows of the picture Frigate's motion detector works on by default (its ``frame_height``)."""


class MotionConfig(ElementConfig):
    """Motion detection settings.

    ``threshold``: luma difference (0..255) that counts as change;
    ``min_area``: smallest region, fraction of the frame area;
    ``height``: rows of the downscaled plane the work is done on;
    ``absorb_empty``: take the still pixels of a motion box the detector found nothing in into the
    background at once (ghosts of objects that left), instead of over ``1 / alpha`` frames;
    ``alpha``: background adaptation rate per frame (0..1);
    ``recalibrate``: changed fraction that means a global change;
    ``contour_area``: smallest region in pixels of a picture scaled to 100 rows (Frigate's
    ``contour_area`` at its default ``frame_height``), scaled to this element's plane; when
    set it replaces ``min_area``.
    """

    threshold: int = Field(25, ge=1, le=255)
    min_area: float = Field(0.002, ge=0, le=1)
    height: int = Field(180, ge=16)
    alpha: float = Field(0.1, gt=0, le=1)
    recalibrate: float = Field(0.5, gt=0, le=1)
    dilate: int = Field(2, ge=0, le=10)
    contour_area: int | None = Field(None, ge=0, le=1_000_000)
    absorb_empty: bool = True


class MotionElement(Element[MotionConfig]):
    """Finds moving regions; fills ``ctx.motion`` with boxes in frame pixels."""

    name = "motion"
    config_type = MotionConfig

    def __init__(self, config: MotionConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._size = (0, 0)  # the frame size the background and the previous plane are of
        self._mask: np.ndarray | None = None
        self._mask_shape: tuple[int, ...] = ()
        self.recalibrations = 0
        self.absorbed = 0
        """Motion boxes the detector found empty whose still pixels were taken into the background."""

    def update(self, config: MotionConfig, env: PipelineEnv) -> None:
        """New thresholds or masks apply from the next frame; the background is kept."""
        super().update(config, env)
        self._mask_shape = ()  # rebuild the mask on the next frame

    def process(self, ctx: FrameContext) -> None:
        """Compare the frame with the background and report changed regions."""
        # OpenCV's SIMD kernels on uint8/float32 planes: a few hundredths of a millisecond a frame
        # where numpy temporaries and scipy.ndimage took about a millisecond and a half (180x320).
        cfg = self.config
        step = max(1, math.ceil(ctx.height / cfg.height))
        small = np.ascontiguousarray(ctx.luma()[::step, ::step], dtype=np.float32)
        if self._mask_shape != small.shape:
            mask = mask_image(self.env.masks, *small.shape) if self.env.masks else None
            self._mask = None if mask is None else np.where(mask, 0, 1).astype(np.uint8)
            self._mask_shape = small.shape
        empty = self.env.services.pop(EMPTY_MOTION_BOXES, None)
        previous, self._previous = self._previous, small
        # another stream size (even one that scales to the same plane) or plane height: start again
        if (self._background is None or self._size != (ctx.width, ctx.height)
                or self._background.shape != small.shape):
            self._background = small.copy()  # accumulateWeighted writes it in place; small is kept
            self._size = (ctx.width, ctx.height)
            return
        if empty and cfg.absorb_empty and previous is not None and previous.shape == small.shape:
            self._absorb(empty, small, previous, step)
        changed: np.ndarray = (cv2.absdiff(small, self._background) > cfg.threshold).view(np.uint8)  # 0/1
        if self._mask is not None:
            changed = cv2.bitwise_and(changed, self._mask)
        count = cv2.countNonZero(changed)
        if count > cfg.recalibrate * small.size:
            self._background = small.copy()  # a global change: start again from this picture
            self.recalibrations += 1
            return
        cv2.accumulateWeighted(small, self._background, cfg.alpha)
        if not count:
            return
        if cfg.dilate:
            changed = cv2.dilate(changed, _CROSS, iterations=cfg.dilate)
        n, _labels, stats, _centroids = cv2.connectedComponentsWithStats(changed, connectivity=4)
        min_pixels = cfg.min_area * small.size
        if cfg.contour_area is not None:  # Frigate counts pixels of a 100-row picture
            min_pixels = cfg.contour_area * (small.shape[0] / FRIGATE_MOTION_ROWS) ** 2
        for x, y, w, h, size in stats[1:n].tolist():  # label 0 is the background
            if size < min_pixels:
                continue
            ctx.motion.append(
                Box(x * step, y * step, min((x + w) * step, ctx.width), min((y + h) * step, ctx.height))
            )

    def _absorb(self, boxes: list[Box], small: np.ndarray, previous: np.ndarray, step: int) -> None:
        """Take the still pixels of ``boxes`` (frame pixels) into the background.

        A box is left alone when more than a small fraction of it changed since ``previous``.
        """
        assert self._background is not None
        rows, cols = small.shape
        threshold = self.config.threshold
        for box in boxes:
            x0, y0 = max(int(box.x0) // step, 0), max(int(box.y0) // step, 0)
            x1, y1 = min(math.ceil(box.x1 / step), cols), min(math.ceil(box.y1 / step), rows)
            if x1 <= x0 or y1 <= y0:
                continue
            now = small[y0:y1, x0:x1]
            moving = cv2.absdiff(now, previous[y0:y1, x0:x1]) > threshold
            # something in it still moves (an object the detector missed once): leave it to the
            # running average, or the still inside of the object would become background
            if np.count_nonzero(moving) > _STILL_FRACTION * moving.size:
                continue
            np.copyto(self._background[y0:y1, x0:x1], now, where=~moving)
            self.absorbed += 1
