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
from .events import EventType, EventUpdate

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


MAX_EVENTS = 1000
"""Open events whose paths are kept at once (an event that never ends is forgotten first)."""

Point = tuple[float, float, float]


def _bound(path: list[Point]) -> None:
    while len(path) > MAX_POINTS:
        del path[1:-1:2]  # keep the first and the newest, halve the rest


class ObjectPaths:
    """The paths of one camera's live tracks and open events.

    An event may outlive its track (the events element continues it with a new
    track of the same object): its path is the paths of its tracks, joined.
    """

    def __init__(self) -> None:
        self._tracks: dict[int, list[Point]] = {}
        self._events: dict[str, list[Point]] = {}
        self._track_event: dict[int, str] = {}

    def _fold(self, event_id: str, track_id: int) -> list[Point]:
        """The event's path with its track's newer points added."""
        path = self._events.get(event_id)
        if path is None:
            if len(self._events) >= MAX_EVENTS:
                self._events.pop(next(iter(self._events)))
            path = self._events[event_id] = []
        last = path[-1][0] if path else float("-inf")
        path.extend(p for p in self._tracks.get(track_id, ()) if p[0] > last)
        _bound(path)
        return path

    def update(self, ctx: FrameContext) -> None:
        """Extend the paths with this frame's tracks, and attach them to this frame's event updates."""
        w, h = max(ctx.width, 1), max(ctx.height, 1)
        t = round(ctx.capture_ns / 1e9, 3)
        for obj in ctx.tracks:
            x0, _y0, x1, y1 = obj.box
            point = (t, round((x0 + x1) / 2 / w, 4), round(y1 / h, 4))
            path = self._tracks.setdefault(obj.track_id, [])
            if not path or max(abs(point[1] - path[-1][1]), abs(point[2] - path[-1][2])) >= MIN_STEP:
                path.append(point)
                _bound(path)
        for i, update in enumerate(ctx.events):
            if isinstance(update, EventUpdate) and not isinstance(update, PathEventUpdate):
                ev = update.event
                self._track_event[ev.track_id] = ev.event_id
                path = self._fold(ev.event_id, ev.track_id)
                ctx.events[i] = PathEventUpdate(update.type, ev, tuple(path))
                if update.type == EventType.END:
                    self._events.pop(ev.event_id, None)
        for obj in ctx.tracks:
            if obj.ended:  # its points go to its event (which may go on with another track)
                event_id = self._track_event.pop(obj.track_id, None)
                if event_id is not None and event_id in self._events:
                    self._fold(event_id, obj.track_id)
                self._tracks.pop(obj.track_id, None)
