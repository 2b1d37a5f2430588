"""``track``: stable object ids across frames with ByteTrack (roboflow ``trackers``).

The tracker library associates detections frame to frame by box overlap with each
track's predicted box; it is given the frames' capture times, so how long it keeps a lost
track (``lost_track_s``) and its motion model hold at any detection rate. This element
then keeps one camfleet id per object across the tracker's own ids: a track the tracker
lost (a miss, an occlusion, a stop) and a new one that appears where it was, or where
it was heading, of the same label and size, within ``max_disappeared_s``, are the same
object (``reid_distance``). It keeps each track's history — first and last seen,
frames, latest scores, top score and the frame it came from, whether it is stationary —
and reports a track as ended once unseen for ``max_disappeared_s``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import supervision as sv
from pydantic import Field
from trackers import ByteTrackTracker

from .context import SCORE_HISTORY, Box, FrameContext, TrackedObject
from .element import LIVE_TRACK_BOXES, Element, ElementConfig, PipelineEnv

# ByteTrack counts its lost-track buffer in frames of a 30 fps video, whatever the rate.
_BUFFER_FPS = 30.0
# How near the frame's border (fraction of its width/height) a box leaving the frame ends.
_EDGE = 0.02
# Box-height ratio beyond which a new track is not the lost one come back (nearer or farther).
_MAX_SIZE_RATIO = 2.0


class TrackConfig(ElementConfig):
    """Tracking settings (times in seconds, distances in pixels unless said otherwise)."""

    max_disappeared_s: float = Field(
        3.0, gt=0, description="A track unseen this long (s) has ended; until then, an object that "
        "comes back keeps its id.")
    lost_track_s: float | None = Field(
        None, gt=0, description="How long (s) the tracker keeps predicting an unmatched track for "
        "overlap matching; default: max_disappeared_s; at least 1.5 frame intervals at fps.")
    reid_distance: float = Field(
        1.0, ge=0, description="A new track whose box centre is within this many box sizes (the "
        "larger side) of a lost track's last or predicted centre, with the same label and a similar "
        "size, continues the lost track's id; 0: off.")
    stationary_s: float = Field(
        10.0, gt=0, description="An object whose box centre stayed within stationary_px for this "
        "long (s) is stationary.")
    stationary_px: float = Field(10.0, ge=0, description="See stationary_s (pixels).")
    fps: float = Field(
        5.0, gt=0, description="Reference detection rate (frames/s) of the tracker's motion model; "
        "frame times come from the frames' capture times.")
    min_iou: float = Field(0.1, ge=0, le=1, description="Least overlap of a detection with a "
                           "track's predicted box to continue it.")


def _axis_offset(a0: float, a1: float, b0: float, b1: float) -> float:
    """How far apart two intervals are (px), by whichever of their starts, ends or middles agree best.

    An occluder or the frame's border cuts one side of a box; the other side stays true.
    """
    return min(abs(a0 - b0), abs(a1 - b1), abs((a0 + a1) - (b0 + b1)) / 2)


def reid_cost(last: Box, velocity: tuple[float, float], dt_s: float, new: Box) -> float:
    """How far ``new`` is from where a lost object was (``last``) or was heading, in box sizes.

    ``velocity`` is ``(vx, vy)`` in px/s; ``dt_s`` the time since it was last seen. The
    nearer of its last and its predicted box counts, so an object that stopped unseen and one
    that walked on are both found; a box is compared by whichever of its edges or its middle
    agree best, so a box cut by an occluder still matches. ``inf`` when the heights differ
    more than twofold.
    """
    size = max(last.width, last.height, 1.0)
    if not 1 / _MAX_SIZE_RATIO <= max(new.height, 1.0) / max(last.height, 1.0) <= _MAX_SIZE_RATIO:
        return math.inf
    best = math.inf
    for shift in (0.0, dt_s):
        dx, dy = velocity[0] * shift, velocity[1] * shift
        off_x = _axis_offset(last.x0 + dx, last.x1 + dx, new.x0, new.x1)
        off_y = _axis_offset(last.y0 + dy, last.y1 + dy, new.y0, new.y1)
        best = min(best, math.hypot(off_x, off_y))
    return best / size


def edge_velocity(before: Box, after: Box, dt_s: float) -> tuple[float, float]:
    """A box's velocity ``(vx, vy)`` in px/s from two sightings ``dt_s`` seconds apart.

    Per axis, that of the edge that moved more, since an occluder or the frame's border
    holds the other edge of a box it cuts.
    """
    def axis(d0: float, d1: float) -> float:
        return (d0 if abs(d0) >= abs(d1) else d1) / dt_s
    return (axis(after.x0 - before.x0, after.x1 - before.x1),
            axis(after.y0 - before.y0, after.y1 - before.y1))


def left_frame(box: Box, velocity: tuple[float, float], width: int, height: int) -> bool:
    """True if an object last seen at ``box`` (px), moving at ``velocity`` (px/s), left the frame.

    Its box touched a border of the ``width`` x ``height`` frame and it was heading across
    it. Such an object is gone, not hidden, so a newcomer near that border is someone else.
    """
    vx, vy = velocity
    mx, my = _EDGE * width, _EDGE * height
    return ((box.x0 <= mx and vx < 0) or (box.x1 >= width - mx and vx > 0)
            or (box.y0 <= my and vy < 0) or (box.y1 >= height - my and vy > 0))


class TrackElement(Element[TrackConfig]):
    """Turns ``ctx.detections`` into ``ctx.tracks`` with stable ``track_id``s."""

    name = "track"
    config_type = TrackConfig

    def __init__(self, config: TrackConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self._tracker = self._new_tracker()
        self._tracks: dict[int, TrackedObject] = {}
        self._anchor: dict[int, tuple[float, float, int]] = {}  # id -> (cx, cy, since_ns)
        self._ids: dict[int, int] = {}  # the tracker's id -> camfleet's
        self._owner: dict[int, int] = {}  # camfleet id -> the tracker id that continues it now
        self._next_id = itertools.count(1)
        self._last_ts = 0.0

    def _new_tracker(self) -> ByteTrackTracker:
        cfg = self.config
        lost_s = cfg.max_disappeared_s if cfg.lost_track_s is None else cfg.lost_track_s
        # under a frame interval, every track would be dropped before its next frame is matched
        lost_s = max(lost_s, 1.5 / cfg.fps)
        return ByteTrackTracker(
            lost_track_buffer=max(1, math.ceil(lost_s * _BUFFER_FPS)),
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
        # the tracker skips a frame whose time does not advance: keep its clock strictly increasing
        ts = max(ctx.capture_ns / 1e9, self._last_ts + 1e-6)
        self._last_ts = ts
        tracked = self._tracker.update(detections, timestamp=ts)
        now = ctx.capture_ns
        seen: set[int] = set()
        fresh: list[tuple[int, str, float, Box]] = []
        ids: list[int] = [] if tracked.tracker_id is None else [int(t) for t in tracked.tracker_id]
        for i, tid in enumerate(ids):
            if tid < 0:
                continue  # not yet confirmed by the tracker
            x0, y0, x1, y1 = (float(v) for v in tracked.xyxy[i])
            score = float(tracked.confidence[i]) if tracked.confidence is not None else 0.0
            label = labels[int(tracked.class_id[i])] if tracked.class_id is not None else "object"
            cid = self._ids.get(tid)
            if cid is None or self._owner.get(cid) != tid or cid in seen:
                fresh.append((tid, label, score, Box(x0, y0, x1, y1)))
                continue
            seen.add(cid)
            self._observe(cid, label, score, Box(x0, y0, x1, y1), ctx.seq, now)
        for tid, label, score, box in fresh:
            self._ids[tid] = cid = self._reidentify(label, box, seen, now, (ctx.width, ctx.height))
            self._owner[cid] = tid
            seen.add(cid)
            self._observe(cid, label, score, box, ctx.seq, now)
        for cid, obj in list(self._tracks.items()):
            if cid not in seen and now - obj.last_ns > self.config.max_disappeared_s * 1e9:
                obj.ended = True
                self._forget(cid)
                ctx.tracks.append(obj)
        ctx.tracks.extend(self._tracks[t] for t in sorted(seen) if t in self._tracks)
        # for detect's refresh_s, which runs before this element in the next frame: every live
        # track's last box, the ones not seen in this frame included (a still object makes no motion)
        self.env.services[LIVE_TRACK_BOXES] = [obj.box for obj in self._tracks.values()]

    def update(self, config: TrackConfig, env: PipelineEnv) -> None:
        """Take new settings; a change of the tracker's own ones restarts it.

        Objects keep their ids through re-identification.
        """
        keys = ("max_disappeared_s", "lost_track_s", "fps", "min_iou")
        rebuild = any(getattr(config, k) != getattr(self.config, k) for k in keys)
        super().update(config, env)
        if rebuild:
            self._tracker = self._new_tracker()
            self._ids.clear()
            self._owner.clear()
            self._last_ts = 0.0

    def _reidentify(self, label: str, box: Box, seen: set[int], now: int, size: tuple[int, int]) -> int:
        """The camfleet id for a new track of the tracker at ``box``.

        That of a lost track it continues, or a new one.
        """
        if self.config.reid_distance > 0:
            lost = [(cid, obj) for cid, obj in self._tracks.items()
                    if cid not in seen and obj.label == label
                    and not left_frame(obj.box, obj.velocity, *size)]
            best: tuple[float, int] | None = None
            for cid, obj in lost:
                cost = reid_cost(obj.box, obj.velocity, (now - obj.last_ns) / 1e9, box)
                if cost <= self.config.reid_distance and (best is None or cost < best[0]):
                    best = (cost, cid)
            if best is not None:
                return best[1]
        return next(self._next_id)

    def _forget(self, cid: int) -> None:
        del self._tracks[cid]
        self._anchor.pop(cid, None)
        self._owner.pop(cid, None)
        for tid in [t for t, c in self._ids.items() if c == cid]:
            del self._ids[tid]

    def _observe(self, tid: int, label: str, score: float, box: Box, seq: int, now: int) -> None:
        obj = self._tracks.get(tid)
        cx, cy = box.center
        if obj is None:
            obj = TrackedObject(tid, label, score, box, first_ns=now, last_ns=now,
                                top_score=score, best_seq=seq)
            self._tracks[tid] = obj
        else:
            dt = (now - obj.last_ns) / 1e9
            if dt > 0:
                vx, vy = edge_velocity(obj.box, box, dt)
                # smoothed, so that one jittery box does not send the prediction astray
                obj.velocity = (0.5 * obj.velocity[0] + 0.5 * vx, 0.5 * obj.velocity[1] + 0.5 * vy)
            obj.frames += 1
            obj.box, obj.score, obj.last_ns = box, score, now
            if score > obj.top_score:
                obj.top_score, obj.best_seq = score, seq
        obj.scores.append(score)
        del obj.scores[:-SCORE_HISTORY]
        ax, ay, since = self._anchor.get(tid, (cx, cy, now))
        if abs(cx - ax) > self.config.stationary_px or abs(cy - ay) > self.config.stationary_px:
            ax, ay, since = cx, cy, now
        self._anchor[tid] = (ax, ay, since)
        obj.stationary = now - since >= self.config.stationary_s * 1e9
