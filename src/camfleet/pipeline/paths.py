"""Where each tracked object went: a bounded path per track, added to its event's ``data["path"]``.

The events element says what an event is; this keeps, beside it, the path of
the event's object over the frame so the event review can draw it. A path is
``[[t, x, y], ...]``: epoch seconds and the box's bottom centre (where the
object stands) normalised to 0..1. A point is added when the object moved at
least ``MIN_STEP`` of the frame; past ``MAX_POINTS`` every other point is
dropped, so a long event keeps its whole path at a coarser grain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from camfleet.vocabulary import EventMessage

from .context import FrameContext
from .events import EventUpdate

MAX_POINTS = 64
"""Points kept per path (a few KiB of JSON at most)."""
MIN_STEP = 0.01
"""Least movement (fraction of the frame) between two points."""


@dataclass(frozen=True)
class PathEventUpdate(EventUpdate):
    """An :class:`EventUpdate` whose message carries the object's path in ``data["path"]``."""

    path: tuple[tuple[float, float, float], ...] = field(default=())

    def message(self) -> EventMessage:
        """The outbox message of the update, with ``data["path"]``."""
        m = super().message()
        m.event.data["path"] = [list(p) for p in self.path]
        return m


class ObjectPaths:
    """The paths of one camera's live tracks (forgotten when a track ends)."""

    def __init__(self) -> None:
        self._paths: dict[int, list[tuple[float, float, float]]] = {}

    def update(self, ctx: FrameContext) -> None:
        """Extend the paths with this frame's tracks, and attach them to this frame's event updates."""
        w, h = max(ctx.width, 1), max(ctx.height, 1)
        t = round(ctx.capture_ns / 1e9, 3)
        for obj in ctx.tracks:
            x0, _y0, x1, y1 = obj.box
            point = (t, round((x0 + x1) / 2 / w, 4), round(y1 / h, 4))
            path = self._paths.setdefault(obj.track_id, [])
            if not path or max(abs(point[1] - path[-1][1]), abs(point[2] - path[-1][2])) >= MIN_STEP:
                path.append(point)
                if len(path) > MAX_POINTS:
                    del path[1:-1:2]  # keep the first and the newest, halve the rest
        for i, update in enumerate(ctx.events):
            if isinstance(update, EventUpdate) and not isinstance(update, PathEventUpdate):
                path = self._paths.get(update.event.track_id, [])
                ctx.events[i] = PathEventUpdate(update.type, update.event, tuple(path))
        for obj in ctx.tracks:
            if obj.ended:
                self._paths.pop(obj.track_id, None)
