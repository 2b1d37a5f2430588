"""What the MQTT sink remembers between messages: each event's last state, counts, motion.

Pure logic (no client, times passed in), so that it is unit-tested on its own:

* :class:`EventBook` turns event messages into ``<prefix>/events`` (``new`` / ``update`` / ``end``
  with ``before`` = the state last published for that id) and the object counts
  ``<camera>/<label>``, ``<zone>/<label>`` (with ``all`` and ``/active``) that changed. A copy
  is taken per batch (:meth:`EventBook.copy`) and kept only once the broker took the batch, so
  a retried batch publishes the same ``before``.
* :class:`MotionBook` turns motion activity spans into ``<camera>/motion`` ``ON`` / ``OFF``,
  ``OFF`` only ``off_delay`` seconds after the last motion.
"""

from __future__ import annotations

import json
import re
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from camfleet.vocabulary import EventMessage, MotionSpan

from .payloads import Publication, frigate_object

__all__ = ["EVENT_TYPES", "EventBook", "MotionBook", "topic_level"]

EVENT_TYPES = {"start": "new", "update": "update", "end": "end"}
"""camfleet's event changes as Frigate's ``type`` (an event starts when the object is confirmed,
which is when Frigate sends ``new``)."""

_TOPIC_LEVEL = re.compile(r"^[^#+/\x00]+$")


def topic_level(name: str) -> bool:
    """Whether ``name`` can be one level of a topic (no wildcard, separator or NUL)."""
    return bool(_TOPIC_LEVEL.match(name))


MAX_REMEMBERED = 10_000
"""Events whose last state is kept for ``before`` (the oldest are forgotten past this)."""


class EventBook:
    """Last published state per event id and the counts of active objects.

    ``has_clip(camera)`` says whether a camera records now (Frigate's ``has_clip``).
    """

    def __init__(self, has_clip: Callable[[str], bool] | None = None) -> None:
        self.has_clip = has_clip or (lambda _camera: False)
        self.previous: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.active: dict[str, tuple[str, str, tuple[str, ...]]] = {}  # id -> (camera, label, zones)
        self.published: dict[str, int] = {}  # count topic -> value last published
        self.snapshots: dict[str, object] = {}  # id -> the best sighting whose snapshot went out

    def copy(self) -> EventBook:
        """An independent copy (to apply a batch to before the broker confirmed it)."""
        other = EventBook(self.has_clip)
        other.previous = OrderedDict(self.previous)  # the stored dicts are replaced, never changed
        other.active = dict(self.active)
        other.published = dict(self.published)
        other.snapshots = dict(self.snapshots)
        return other

    def event(self, message: EventMessage) -> list[Publication]:
        """``<prefix>/events`` for ``message``, then the counts it changed."""
        ev = message.event
        after = frigate_object(ev, has_clip=self.has_clip(ev.camera))
        before = self.previous.pop(ev.id, None)
        if before is None:
            # nothing published for this id (its start came before this broker was configured, or
            # before a restart): Frigate's 'new' carries the not yet confirmed object as before
            before = dict(after, false_positive=True) if message.type == "start" else after
        if message.type == "end":
            self.active.pop(ev.id, None)
            self.snapshots.pop(ev.id, None)
        else:
            self.previous[ev.id] = after
            while len(self.previous) > MAX_REMEMBERED:
                self.previous.popitem(last=False)
            self.active[ev.id] = (ev.camera, ev.label, tuple(after["current_zones"]))
        payload = json.dumps({"type": EVENT_TYPES[message.type], "before": before, "after": after},
                             separators=(",", ":"), allow_nan=False)
        return [Publication("events", payload), *self.counts({ev.camera, *ev.zones})]

    def counts(self, places: set[str]) -> list[Publication]:
        """The count topics of ``places`` (cameras and zones) whose value changed since last sent."""
        out: list[Publication] = []
        for place in sorted(p for p in places if topic_level(p)):  # a zone named 'a+b' has no topic
            labels: Counter[str] = Counter()
            for camera, label, zones in self.active.values():
                if place == camera or place in zones:
                    labels[label] += 1
            known = {t.split("/")[1] for t in self.published if t.startswith(place + "/")} - {"all"}
            for label in sorted(x for x in known | set(labels) if topic_level(x)):
                out += self._count(f"{place}/{label}", labels[label])
            out += self._count(f"{place}/all", sum(labels.values()))
        return out

    def current(self, places: Mapping[str, Iterable[str]]) -> list[Publication]:
        """Every count of ``places`` (place -> labels it tracks) now, sent or not (on connecting).

        Labels with active objects are included too; ``all`` always. Records nothing.
        """
        out: list[Publication] = []
        for place, tracked in sorted(places.items()):
            if not topic_level(place):
                continue
            labels: Counter[str] = Counter()
            for camera, label, zones in self.active.values():
                if place == camera or place in zones:
                    labels[label] += 1
            for label in sorted(x for x in set(tracked) | set(labels) if topic_level(x)):
                for topic in (f"{place}/{label}", f"{place}/{label}/active"):
                    out.append(Publication(topic, str(labels[label])))
            total = str(sum(labels.values()))
            out += [Publication(f"{place}/all", total), Publication(f"{place}/all/active", total)]
        return out

    def _count(self, topic: str, value: int) -> list[Publication]:
        if self.published.get(topic) == value:
            return []
        self.published[topic] = value
        # camfleet does not tell stationary objects apart: every object counts as active
        return [Publication(topic, str(value)), Publication(f"{topic}/active", str(value))]

    def snapshot_due(self, message: EventMessage) -> bool:
        """Whether ``message`` brings a better snapshot than the one published for its event."""
        ev = message.event
        if ev.snapshot is None:
            return False
        best = (ev.data.get("best_seq"), ev.top_score)
        if self.snapshots.get(ev.id) == best:
            return False
        self.snapshots[ev.id] = best
        return True


class MotionBook:
    """Motion ``ON`` / ``OFF`` per camera from activity spans; times are epoch seconds."""

    def __init__(self, off_delay: float) -> None:
        self.off_delay = off_delay
        self.open: dict[str, set[float]] = {}  # camera -> starts of its open motion spans
        self.on: dict[str, bool] = {}
        self.off_at: dict[str, float] = {}  # camera -> when it turns OFF, if no motion comes first

    def span(self, span: MotionSpan, now: float) -> list[Publication]:
        """Account a motion span (open, extended or closed); the publications due now."""
        if span.kind != "motion":
            return []
        starts = self.open.setdefault(span.camera, set())
        out: list[Publication] = []
        if span.open:
            starts.add(span.start)
            self.off_at.pop(span.camera, None)
            if not self.on.get(span.camera):
                self.on[span.camera] = True
                out.append(Publication(f"{span.camera}/motion", "ON"))
            return out
        starts.discard(span.start)
        if not self.on.get(span.camera):
            # a span journalled before we were told it opened (or long over): no ON/OFF flicker
            return out
        if not starts:
            self.off_at[span.camera] = max(self.off_at.get(span.camera, 0.0), span.end + self.off_delay)
        return out + self.due(now)

    def due(self, now: float) -> list[Publication]:
        """``OFF`` for each camera whose off delay has passed at ``now``."""
        out: list[Publication] = []
        for camera, at in list(self.off_at.items()):
            if at <= now:
                del self.off_at[camera]
                self.on[camera] = False
                out.append(Publication(f"{camera}/motion", "OFF"))
        return out

    def next_due(self) -> float | None:
        """When the next ``OFF`` is due (epoch seconds), if any."""
        return min(self.off_at.values(), default=None)

    def state(self, camera: str) -> str:
        """``ON`` or ``OFF`` as last published for ``camera``."""
        return "ON" if self.on.get(camera) else "OFF"
