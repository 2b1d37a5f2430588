"""``track``: stable object ids across frames with ByteTrack (roboflow ``trackers``).

The tracker library associates detections frame to frame; this element keeps
each track's history: first and last seen, frames, top score and the frame it
came from, whether the object is stationary, and when a track has ended.
"""

from __future__ import annotations

import numpy as np
import supervision as sv
from pydantic import Field
from trackers import ByteTrackTracker

from .context import Box, FrameContext, TrackedObject
from .element import Element, ElementConfig, PipelineEnv


class TrackConfig(ElementConfig):
    """Tracking settings.

    ``max_disappeared_s``: a track unseen this long has ended;
    ``stationary_s`` / ``stationary_px``: an object whose box centre stayed
    within ``stationary_px`` pixels for ``stationary_s`` seconds is stationary;
    ``fps``: expected detection rate (tunes the tracker's motion model).
    """

    max_disappeared_s: float = Field(3.0, gt=0)
    stationary_s: float = Field(10.0, gt=0)
    stationary_px: float = Field(10.0, ge=0)
    fps: float = Field(5.0, gt=0)
    min_iou: float = Field(0.1, ge=0, le=1)


class TrackElement(Element[TrackConfig]):
    """Turns ``ctx.detections`` into ``ctx.tracks`` with stable ``track_id``s."""

    name = "track"
    config_type = TrackConfig

    def __init__(self, config: TrackConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self._tracker = self._new_tracker()
        self._tracks: dict[int, TrackedObject] = {}
        self._anchor: dict[int, tuple[float, float, int]] = {}  # id -> (cx, cy, since_ns)

    def _new_tracker(self) -> ByteTrackTracker:
        cfg = self.config
        return ByteTrackTracker(
            lost_track_buffer=max(1, round(cfg.max_disappeared_s * cfg.fps)),
            frame_rate=cfg.fps,
            track_activation_threshold=0.3,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=cfg.min_iou,
            high_conf_det_threshold=0.5,
        )

    def process(self, ctx: FrameContext) -> None:
        """Associate this frame's detections with tracks; report live and just-ended tracks."""
        dets = ctx.detections
        labels = sorted({d.label for d in dets})
        if dets:
            detections = sv.Detections(
                xyxy=np.array([[d.box.x0, d.box.y0, d.box.x1, d.box.y1] for d in dets], np.float32),
                confidence=np.array([d.score for d in dets], np.float32),
                class_id=np.array([labels.index(d.label) for d in dets], int),
            )
        else:
            detections = sv.Detections.empty()
        tracked = self._tracker.update(detections)
        now = ctx.capture_ns
        seen: set[int] = set()
        ids: list[int] = [] if tracked.tracker_id is None else [int(t) for t in tracked.tracker_id]
        for i, tid in enumerate(ids):
            if tid < 0:
                continue  # not yet confirmed by the tracker
            x0, y0, x1, y1 = (float(v) for v in tracked.xyxy[i])
            score = float(tracked.confidence[i]) if tracked.confidence is not None else 0.0
            label = labels[int(tracked.class_id[i])] if tracked.class_id is not None else "object"
            seen.add(tid)
            self._observe(tid, label, score, Box(x0, y0, x1, y1), ctx.seq, now)
        for tid, obj in list(self._tracks.items()):
            if tid not in seen and now - obj.last_ns > self.config.max_disappeared_s * 1e9:
                obj.ended = True
                del self._tracks[tid]
                self._anchor.pop(tid, None)
                ctx.tracks.append(obj)
        ctx.tracks.extend(self._tracks[t] for t in sorted(seen) if t in self._tracks)

    def _observe(self, tid: int, label: str, score: float, box: Box, seq: int, now: int) -> None:
        obj = self._tracks.get(tid)
        if obj is None:
            obj = TrackedObject(tid, label, score, box, first_ns=now, last_ns=now,
                                top_score=score, best_seq=seq)
            self._tracks[tid] = obj
        else:
            obj.frames += 1
            obj.box, obj.score, obj.last_ns = box, score, now
            if score > obj.top_score:
                obj.top_score, obj.best_seq = score, seq
        cx, cy = box.center
        ax, ay, since = self._anchor.get(tid, (cx, cy, now))
        if abs(cx - ax) > self.config.stationary_px or abs(cy - ay) > self.config.stationary_px:
            ax, ay, since = cx, cy, now
        self._anchor[tid] = (ax, ay, since)
        obj.stationary = now - since >= self.config.stationary_s * 1e9
