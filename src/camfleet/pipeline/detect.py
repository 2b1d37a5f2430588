"""``detect``: run a model on the moving parts of a frame (or the whole frame).

With ``mode: regions`` (the default) nothing is sent to the detector unless
the motion element found something (or ``refresh_s`` has passed while objects
are being tracked): motion boxes are grown into squares at least the model's
input size, overlapping squares merged (and, with ``merge_min_size``, crops
that keep their objects big enough), cropped, scaled to the input size and
detected in one request;
boxes come back in frame pixels, filtered by label, score and area, and
duplicates from overlapping regions are removed with class-wise NMS. The
motion boxes it looked at and found nothing in go back to the motion element
(:data:`~camfleet.pipeline.element.EMPTY_MOTION_BOXES`), which stops reporting
the still ones (ghosts of objects that left).

The detector is found in ``env.services["detectors"][name]``: an object with
``detect(images) -> list[list[Detection]]`` and ``input_size`` (w, h), such as
a :class:`camfleet.detect.client.DetectorClient`. One that also has
``submit(images) -> id``, ``ready(id)``, ``result(id)`` and ``cancel(id)``
(the client does) lets the pipeline keep ``inflight`` frames' requests out at
once (:class:`~camfleet.pipeline.window.FrameWindow`); results are applied in
frame order either way. With ``submit_into(count, fill)`` (the client has it)
each crop is scaled and converted straight into the request ring
(:mod:`camfleet.pipeline.crop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from camfleet.detect.protocol import MAX_INFLIGHT
from camfleet.detect.runtime import batched_nms

from .context import Box, Detection, FrameContext
from .crop import RgbCropper
from .element import EMPTY_MOTION_BOXES, LIVE_TRACK_BOXES, Element, ElementConfig, PipelineEnv

Score = Annotated[float, Field(ge=0, le=1)]
"""A detector score: 0..1 (a threshold above 1 would silently drop every detection)."""


class DetectConfig(ElementConfig):
    """Detection settings.

    ``model`` / ``detector``: ids from the config's registries;
    ``min_score``: a score for every label, or per label with a ``default``;
    ``min_area``: smallest box, fraction of the frame area; ``labels``: keep
    only these (all if empty); ``mode``: ``regions`` (motion-gated) or
    ``frame``; ``region_scale``: how much a motion box is grown;
    ``max_regions``: most crops per frame; ``merge_min_size``: crops that do
    not overlap are merged into one (their bounding box, stretched to the
    model's square input at most 2:1) while every motion box in them keeps at
    least this size in the model's input (its longer side, fraction of the
    input's side) or, when smaller, the size it had in its own crop; 1 (the
    default): never (fewer inferences, but smaller objects score lower: on the
    capacity bench's scene 0.3 cuts 4 % of the inferences and 1 % of the
    detections); ``refresh_s``: re-detect tracked
    objects this often even without motion (0: never); ``nms_iou``: overlap
    above which two boxes of one label are the same object; ``inflight``:
    frames whose detector requests may be out at once (1 or 2): with 2, when
    frames are waiting, the next frame's request is sent before the previous
    answer is back, so one round trip does not cap the camera's rate (answers
    are applied in frame order; a pipeline that keeps up waits for each answer
    as soon as no newer frame is there, so its latency does not grow).
    """

    model: str = "ssd-mobilenet-v2"
    detector: str = "cpu"
    min_score: Score | dict[str, Score] = 0.5
    min_area: float = Field(0.0, ge=0, le=1)
    labels: list[str] = Field(default_factory=list)
    mode: Literal["regions", "frame"] = "regions"
    region_scale: float = Field(1.5, ge=1)
    max_regions: int = Field(4, ge=1, le=32)
    merge_min_size: float = Field(1.0, ge=0, le=1)
    refresh_s: float = Field(0.0, ge=0)
    nms_iou: float = Field(0.5, gt=0, le=1)
    inflight: int = Field(2, ge=1, le=MAX_INFLIGHT)


@dataclass
class _Pending:
    """A frame's detector request: its id (None: answered at once, ``results``) and its regions."""

    detector: Any
    rid: int | None
    regions: list[tuple[int, int, int, int]]
    input_size: tuple[int, int]
    results: list[list[Detection]] | None = None


def _square(box: Box, scale: float, side_min: float, width: int, height: int) -> tuple[int, int, int, int]:
    cx, cy = box.center
    side = max(box.x1 - box.x0, box.y1 - box.y0) * scale
    side = min(max(side, side_min), width, height)
    x0 = int(min(max(cx - side / 2, 0), width - side))
    y0 = int(min(max(cy - side / 2, 0), height - side))
    return x0, y0, x0 + int(side), y0 + int(side)


def _merge(regions: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Merge regions that overlap into their bounding boxes, until none overlap."""
    out = list(regions)
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return out


Region = tuple[int, int, int, int]
_MAX_ASPECT = 2.0
"""Widest crop merged (either way): the model's input is square, so a crop is stretched to it."""


def _size_in(box: Box, region: Region, input_size: tuple[int, int]) -> float:
    """The longer side of ``box`` (px) once ``region`` is resized to the model's input (px)."""
    sx = (region[2] - region[0]) / input_size[0]
    sy = (region[3] - region[1]) / input_size[1]
    return max((box.x1 - box.x0) / sx, (box.y1 - box.y0) / sy)


def _union(a: Region, b: Region) -> Region:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _combine(regions: list[Region], squares: list[Region], boxes: list[Box], min_size: float,
             input_size: tuple[int, int]) -> list[Region]:
    """Merge crops into fewer while every box in them stays big enough for the model.

    Two crops become their bounding box when every box in them keeps, in the model's input, at
    least ``min_size`` of the input's side, or the size it had in its own crop (a box already
    smaller than that is never shrunk). Closest pairs first (smallest merged area).
    """
    min_px = min_size * min(input_size)
    members: list[list[Box]] = [[] for _ in regions]
    for box, sq in zip(boxes, squares, strict=True):
        for i, r in enumerate(regions):
            if r[0] <= sq[0] and r[1] <= sq[1] and sq[2] <= r[2] and sq[3] <= r[3]:
                members[i].append(box)
                break
    out = list(regions)
    while len(out) > 1:
        best: tuple[int, int, int, Region] | None = None
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                u = _union(out[i], out[j])
                w, h = u[2] - u[0], u[3] - u[1]
                if max(w / h, h / w) > _MAX_ASPECT:
                    continue
                own = [(b, out[i]) for b in members[i]] + [(b, out[j]) for b in members[j]]
                big_enough = all(_size_in(b, u, input_size) >= min(min_px, _size_in(b, r, input_size))
                                 for b, r in own)
                if big_enough and (best is None or w * h < best[0]):
                    best = (w * h, i, j, u)
        if best is None:
            break
        _, i, j, u = best
        out[i], members[i] = u, members[i] + members[j]
        del out[j], members[j]
    return out


def _empty_motion(motion: list[Box], regions: list[tuple[int, int, int, int]],
                  found: list[Detection]) -> list[Box]:
    """The motion boxes wholly inside a region sent to the detector that no detection overlaps."""
    def looked_at(m: Box) -> bool:
        return any(r[0] <= m.x0 and r[1] <= m.y0 and m.x1 <= r[2] and m.y1 <= r[3] for r in regions)

    def hit(m: Box) -> bool:
        return any(d.box.x0 < m.x1 and m.x0 < d.box.x1 and d.box.y0 < m.y1 and m.y0 < d.box.y1 for d in found)

    return [m for m in motion if looked_at(m) and not hit(m)]


class DetectElement(Element[DetectConfig]):
    """Fills ``ctx.detections``; counts detector ``requests`` and ``images`` sent."""

    name = "detect"
    config_type = DetectConfig
    splits = True

    def __init__(self, config: DetectConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self.requests = 0
        self.images = 0
        self._last_detect_ns = 0
        self._pending: dict[int, _Pending] = {}  # id(ctx) -> its request, until collected or dropped
        self._crops = RgbCropper()

    def _detector(self) -> Any:
        detectors = self.env.services.get("detectors", {})
        if self.config.detector not in detectors:
            raise LookupError(
                f"camera {self.env.camera!r}: detect element needs detector {self.config.detector!r}, "
                f"which is not running (have: {', '.join(detectors) or 'none'})"
            )
        return detectors[self.config.detector]

    def _regions(self, ctx: FrameContext, input_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        side_min = float(min(input_size))
        if self.config.mode == "frame":
            return [(0, 0, ctx.width, ctx.height)]
        boxes = list(ctx.motion)
        due = (self.config.refresh_s > 0 and ctx.capture_ns - self._last_detect_ns
               >= self.config.refresh_s * 1e9)
        if due:  # the tracker's live objects as of the previous frame (track runs after detect)
            boxes += self.env.services.get(LIVE_TRACK_BOXES, [])
        squares = [_square(b, self.config.region_scale, side_min, ctx.width, ctx.height) for b in boxes]
        regions = _merge(squares)
        if len(regions) > 1 and self.config.merge_min_size < 1:
            regions = _combine(regions, squares, boxes, self.config.merge_min_size, input_size)
        regions.sort(key=lambda r: (r[2] - r[0]) * (r[3] - r[1]), reverse=True)
        return regions[: self.config.max_regions]

    def process(self, ctx: FrameContext) -> None:
        """Detect in this frame's regions (none when nothing moved)."""
        self.submit(ctx)
        self.collect(ctx)

    def submit(self, ctx: FrameContext) -> None:
        """Send this frame's regions to the detector (nothing when nothing moved); see :meth:`collect`."""
        detector = self._detector()
        in_w, in_h = detector.input_size
        regions = self._regions(ctx, (in_w, in_h))
        if not regions:
            return  # motion gating: a static scene costs no detector request
        if hasattr(detector, "submit_into"):  # each crop is made in the request ring's slot: no copy
            rid = detector.submit_into(len(regions), lambda i, dst: self._crops.write(ctx, regions[i], dst))
            pending = _Pending(detector, rid, regions, (in_w, in_h))
        else:
            crops = []
            for region in regions:
                crop = np.empty((in_h, in_w, 3), np.uint8)
                self._crops.write(ctx, region, crop)
                crops.append(crop)
            if hasattr(detector, "submit"):
                pending = _Pending(detector, detector.submit(crops), regions, (in_w, in_h))
            else:  # a plain detect() service answers at once
                pending = _Pending(detector, None, regions, (in_w, in_h), results=detector.detect(crops))
        self._pending[id(ctx)] = pending
        self._last_detect_ns = ctx.capture_ns

    def ready(self, ctx: FrameContext, timeout: float = 0.0) -> bool:
        """Whether this frame's answer is in (or it sent no request); waits up to ``timeout`` s for it."""
        p = self._pending.get(id(ctx))
        if p is None or p.rid is None:
            return True
        if timeout > 0:
            try:
                return bool(p.detector.ready(p.rid, timeout=timeout))
            except TypeError:  # a detector object whose ready() takes no timeout
                pass
        return bool(p.detector.ready(p.rid))

    def drop(self, ctx: FrameContext) -> None:
        """Forget this frame's request (its answer, if any comes, is dropped)."""
        p = self._pending.pop(id(ctx), None)
        if p is not None and p.rid is not None:
            p.detector.cancel(p.rid)

    def collect(self, ctx: FrameContext) -> None:
        """Wait for this frame's answer and fill ``ctx.detections`` (boxes in frame pixels)."""
        p = self._pending.pop(id(ctx), None)
        if p is None:
            return
        results: list[list[Detection]] = p.detector.result(p.rid) if p.rid is not None else p.results or []
        regions = p.regions
        in_w, in_h = p.input_size
        self.requests += 1
        self.images += len(regions)
        found: list[Detection] = []
        frame_area = ctx.width * ctx.height
        for (x0, y0, x1, y1), dets in zip(regions, results, strict=True):
            sx, sy = (x1 - x0) / in_w, (y1 - y0) / in_h
            for d in dets:
                if self.config.labels and d.label not in self.config.labels:
                    continue
                if d.score < self._min_score(d.label):
                    continue
                box = Box(x0 + d.box[0] * sx, y0 + d.box[1] * sy, x0 + d.box[2] * sx, y0 + d.box[3] * sy)
                if box.area < self.config.min_area * frame_area:
                    continue
                found.append(Detection(d.label, d.label_id, d.score, box))
        if len(regions) > 1 and found:
            labels = sorted({f.label for f in found})
            keep = batched_nms(
                np.array([[f.box.x0, f.box.y0, f.box.x1, f.box.y1] for f in found]),
                np.array([f.score for f in found]),
                np.array([labels.index(f.label) for f in found]),
                self.config.nms_iou,
            )
            found = [found[int(i)] for i in keep]
        ctx.detections.extend(found)
        # for the motion element's next frame: where it saw change and the detector saw nothing
        self.env.services[EMPTY_MOTION_BOXES] = _empty_motion(ctx.motion, regions, found)

    def _min_score(self, label: str) -> float:
        ms = self.config.min_score
        if isinstance(ms, dict):
            return float(ms.get(label, ms.get("default", 0.5)))
        return float(ms)
