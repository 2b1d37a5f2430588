"""``events``: an object's life cycle as start / update / end events.

An event starts when a track has been seen ``min_frames`` times, is updated
when its top score improves or it enters a zone (at most every
``update_interval_s``), and ends when the track ends. Each event keeps its top
score, the frame that gave it (as an RGB copy, for snapshots), and the zones it
visited.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field

from camfleet.vocabulary import Event, EventMessage

from .context import Box, FrameContext, TrackedObject, ZoneChange
from .element import Element, ElementConfig, PipelineEnv


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
    """Event settings.

    ``min_frames``: sightings before an event starts; ``update_interval_s``:
    least time between updates of one event; ``labels``: only these (all if empty).
    """

    min_frames: int = Field(3, ge=1)
    update_interval_s: float = Field(1.0, ge=0)
    labels: list[str] = Field(default_factory=list)


class EventsElement(Element[EventsConfig]):
    """Appends :class:`EventUpdate`s to ``ctx.events``."""

    name = "events"
    config_type = EventsConfig

    def __init__(self, config: EventsConfig, env: PipelineEnv) -> None:
        super().__init__(config, env)
        self._open: dict[int, ObjectEvent] = {}
        self._last_update: dict[int, int] = {}

    def process(self, ctx: FrameContext) -> None:
        """Start, update or end the events of this frame's tracks."""
        entered = {(z.track_id, z.zone) for z in ctx.zone_events if z.change == ZoneChange.ENTER}
        for obj in ctx.tracks:
            if self.config.labels and obj.label not in self.config.labels:
                continue
            event = self._open.get(obj.track_id)
            if event is not None:
                event.last_ns = max(event.last_ns, obj.last_ns)
            if obj.ended:
                if event is not None:
                    event.end_ns = obj.last_ns
                    del self._open[obj.track_id]
                    ctx.events.append(EventUpdate(EventType.END, event))
                continue
            if event is None:
                if obj.frames >= self.config.min_frames:
                    event = ObjectEvent(uuid.uuid4().hex, ctx.camera, obj.label, obj.track_id,
                                        start_ns=obj.first_ns, last_ns=obj.last_ns)
                    self._open[obj.track_id] = event
                    self._absorb(event, obj, ctx)
                    self._last_update[obj.track_id] = ctx.capture_ns
                    ctx.events.append(EventUpdate(EventType.START, event))
                continue
            changed = self._absorb(event, obj, ctx)
            changed |= any(t == obj.track_id for t, _ in entered)
            since = ctx.capture_ns - self._last_update.get(obj.track_id, 0)
            if changed and since >= self.config.update_interval_s * 1e9:
                self._last_update[obj.track_id] = ctx.capture_ns
                ctx.events.append(EventUpdate(EventType.UPDATE, event))
        # every open event's last sighting (epoch s): the outbox closes an event left open by a
        # killed pipeline at this time
        ctx.seen = {e.event_id: max(e.last_ns, e.start_ns) / 1e9 for e in self._open.values()}

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
        """Forget open events (the runtime ends them on shutdown)."""
        self._open.clear()
