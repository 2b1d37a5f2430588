"""``events``: an object's life cycle as start / update / end events.

An event starts when its track is confirmed: seen ``min_frames`` times with the median
of its last ``min_frames`` scores at least ``confirm_score`` (Frigate's false-positive
rule), so a detection that flickers for a frame or two never becomes an event. It is
updated when its top score improves or it enters a zone (at most every
``update_interval_s``). When its track ends, the event waits ``reopen_s`` before it
ends: if the same track, or a new track of the same label near where the object was
last seen, comes back meanwhile, the event goes on (an ``update``, never a second
``start``). The end that follows is the last sighting, so the wait shows nowhere but
in when the ``end`` is sent. Each event keeps its top score, the frame that gave it
(as an RGB copy, for snapshots), and the zones it visited.

Why the end is held rather than an ended event reopened: an ``end`` that has left the
camera is final everywhere (the store never reopens an ended event on a replay, and MQTT
and webhook consumers treat it as the object gone), so an event is only ended once it
cannot come back. While it is held it stays open in the outbox with its last sighting,
so a pipeline killed meanwhile has it ended at that time.
"""

from __future__ import annotations

import enum
import statistics
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from camfleet.vocabulary import Event, EventMessage

from .context import Box, FrameContext, TrackedObject, ZoneChange
from .element import Element, ElementConfig, PipelineEnv
from .track import left_frame, reid_cost


class EventType(enum.Enum):
    """Where an object event is in its life."""

    START = "start"
    UPDATE = "update"
    END = "end"


@dataclass
class ObjectEvent:
    """The pipeline's working state of an object event; times are wall-clock ns since the epoch.

    It holds what only the pipeline needs (track, best frame); what leaves the pipeline is
    :meth:`record`, the shared :class:`camfleet.vocabulary.Event` (seconds).
    ``last_ns`` is when the object was last seen.
    """

    event_id: str
    camera: str
    label: str
    track_id: int
    start_ns: int
    end_ns: int | None = None
    top_score: float = 0.0
    best_seq: int = 0
    best_ns: int = 0
    best_box: Box | None = None
    zones: list[str] = field(default_factory=list)
    snapshot: str | None = None
    best_image: np.ndarray | None = field(default=None, repr=False)
    last_ns: int = 0

    def record(self) -> Event:
        """The event as the rest of the node sees it (epoch seconds, no image)."""
        data: dict[str, Any] = {"track_id": self.track_id, "best_seq": self.best_seq,
                                "last_seen": max(self.last_ns, self.start_ns) / 1e9}
        if self.best_box is not None:
            b = self.best_box
            data["box"] = [b.x0, b.y0, b.x1, b.y1]
        if self.best_ns:
            data["best_time"] = self.best_ns / 1e9  # when the best sighting (the snapshot) was captured
        return Event(
            id=self.event_id, camera=self.camera, label=self.label, start=self.start_ns / 1e9,
            end=None if self.end_ns is None else self.end_ns / 1e9, top_score=round(self.top_score, 4),
            zones=list(self.zones), snapshot=self.snapshot, data=data,
        )


@dataclass(frozen=True)
class EventUpdate:
    """One emitted change of an :class:`ObjectEvent`."""

    type: EventType
    event: ObjectEvent

    def message(self) -> EventMessage:
        """The outbox message for this change (the event's state now, in seconds)."""
        return EventMessage(self.type.value, self.event.record())


class EventsConfig(ElementConfig):
    """Event settings (times in seconds)."""

    min_frames: int = Field(
        3, ge=1, description="Sightings of a track before its event may start (the confirmation "
        "window); the median of its last min_frames scores must also reach confirm_score.")
    confirm_score: float = Field(
        0.6, ge=0, le=1, description="Least median of a track's last min_frames detection scores "
        "for its event to start (Frigate's false-positive threshold); 0: any.")
    reopen_s: float = Field(
        2.0, ge=0, description="After its track ends, how long (s) an event waits for the object "
        "to come back (the same track, or a new one of the same label near where it was last "
        "seen) before it ends; the end time stays the last sighting; 0: end at once, never "
        "re-open.")
    reopen_distance: float = Field(
        1.0, ge=0, description="How near (in box sizes, the larger side) to where an ending "
        "event's object was last seen a new track must appear to continue it; 0: only the same "
        "track continues it.")
    update_interval_s: float = Field(1.0, ge=0, description="Least time (s) between updates of "
                                     "one event.")
    labels: list[str] = Field(default_factory=list, description="Only objects with these labels "
                              "(all if empty).")


@dataclass
class _Ending:
    """An event whose track ended, waiting ``reopen_s`` for its object before it ends."""

    event: ObjectEvent
    box: Box
    velocity: tuple[float, float]  # px/s of the box centre when last seen
    since_ns: int  # when its track ended
    track_id: int  # the track that ended
    left: bool  # it walked out of the frame: only its own track can continue it


def confirmed(obj: TrackedObject, min_frames: int, min_median: float) -> bool:
    """Frigate's false-positive rule: is ``obj`` a real object yet.

    True once it was seen ``min_frames`` times and the median of its last ``min_frames``
    scores is at least ``min_median``.
    """
    if obj.frames < min_frames:
        return False
    recent = obj.scores[-min_frames:] or [obj.score]
    return statistics.median(recent) >= min_median


class EventsElement(Element[EventsConfig]):
    """Appends :class:`EventUpdate`s to ``ctx.events``."""

    name = "events"
    config_type = EventsConfig

    def __init__(self, config: EventsConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self._open: dict[int, ObjectEvent] = {}
        self._ending: dict[int, _Ending] = {}  # by the track id that ended
        self._last_update: dict[int, int] = {}

    def process(self, ctx: FrameContext) -> None:
        """Start, update or end the events of this frame's tracks."""
        now = ctx.capture_ns
        entered = {(z.track_id, z.zone) for z in ctx.zone_events if z.change == ZoneChange.ENTER}
        for obj in ctx.tracks:
            if self.config.labels and obj.label not in self.config.labels:
                continue
            event = self._open.get(obj.track_id)
            if event is not None:
                event.last_ns = max(event.last_ns, obj.last_ns)
            if obj.ended:
                if event is not None and self.config.reopen_s == 0:
                    del self._open[obj.track_id]
                    self._end(obj.track_id, event, ctx)
                elif event is not None:
                    del self._open[obj.track_id]
                    self._ending[obj.track_id] = _Ending(
                        event, obj.box, obj.velocity, now, obj.track_id,
                        left_frame(obj.box, obj.velocity, ctx.width, ctx.height))
                continue
            if event is None:
                ending = self._ending.pop(obj.track_id, None) or self._returning(obj)
                if ending is not None:  # the object came back: its event goes on
                    self._last_update.pop(ending.track_id, None)
                    event = ending.event
                    event.track_id = obj.track_id  # a new track may carry it on: follow that one
                    event.last_ns = max(event.last_ns, obj.last_ns)
                    self._open[obj.track_id] = event
                    self._absorb(event, obj, ctx)
                    self._last_update[obj.track_id] = now
                    ctx.events.append(EventUpdate(EventType.UPDATE, event))
                elif confirmed(obj, self.config.min_frames, self.config.confirm_score):
                    event = ObjectEvent(uuid.uuid4().hex, ctx.camera, obj.label, obj.track_id,
                                        start_ns=obj.first_ns, last_ns=obj.last_ns)
                    self._open[obj.track_id] = event
                    self._absorb(event, obj, ctx)
                    self._last_update[obj.track_id] = now
                    ctx.events.append(EventUpdate(EventType.START, event))
                continue
            changed = self._absorb(event, obj, ctx)
            changed |= any(t == obj.track_id for t, _ in entered)
            since = now - self._last_update.get(obj.track_id, 0)
            if changed and since >= self.config.update_interval_s * 1e9:
                self._last_update[obj.track_id] = now
                ctx.events.append(EventUpdate(EventType.UPDATE, event))
        for tid, ending in list(self._ending.items()):
            # a wall clock stepped back must not hold an end until it catches up
            ending.since_ns = min(ending.since_ns, now)
            if now - ending.since_ns >= self.config.reopen_s * 1e9:
                del self._ending[tid]
                self._end(tid, ending.event, ctx)
        # every open event's last sighting (epoch s), ending ones included: the outbox closes an
        # event left open by a killed pipeline at this time
        live = [*self._open.values(), *(e.event for e in self._ending.values())]
        ctx.seen = {e.event_id: max(e.last_ns, e.start_ns) / 1e9 for e in live}

    def _end(self, track_id: int, event: ObjectEvent, ctx: FrameContext) -> None:
        """End ``event`` at its last sighting."""
        self._last_update.pop(track_id, None)
        event.end_ns = max(event.last_ns, event.start_ns)
        ctx.events.append(EventUpdate(EventType.END, event))

    def _returning(self, obj: TrackedObject) -> _Ending | None:
        """The ending event whose object ``obj`` (a track without an event) is, if any.

        Same label, within ``reopen_distance`` box sizes of where it was or was heading,
        and it did not walk out of the frame.
        """
        if self.config.reopen_distance <= 0:
            return None
        best: tuple[float, int] | None = None
        for tid, e in self._ending.items():
            if e.event.label != obj.label or e.left:
                continue
            dt_s = (obj.last_ns - e.event.last_ns) / 1e9
            cost = reid_cost(e.box, e.velocity, dt_s, obj.box)
            if cost <= self.config.reopen_distance and (best is None or cost < best[0]):
                best = (cost, tid)
        return None if best is None else self._ending.pop(best[1])

    def _absorb(self, event: ObjectEvent, obj: TrackedObject, ctx: FrameContext) -> bool:
        changed = False
        for zone in sorted(obj.zones):
            if zone not in event.zones:
                event.zones.append(zone)
                changed = True
        if obj.score > event.top_score:
            event.top_score = obj.score
            event.best_seq = ctx.seq
            event.best_ns = ctx.capture_ns
            event.best_box = obj.box
            event.best_image = ctx.rgb().copy()
            changed = True
        return changed

    def stop(self) -> None:
        """Forget open and ending events (the runtime ends them on shutdown, at their last sighting)."""
        self._open.clear()
        self._ending.clear()
