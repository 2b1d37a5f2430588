"""The node's shared vocabulary: one shape for each thing that crosses a component boundary.

A leaf module (standard library only) that anything may import. Every time here is
epoch **seconds** (float); pixels are pixels of the image the detector was given.

* :data:`Box`, :class:`Detection`: what a detector returns.
* :class:`Event`: an object event, as the pipeline reports it, the store keeps it and
  the REST API / WebSocket show it (:meth:`Event.public`).
* :class:`SegmentRecord`: one recording segment file.
* :class:`MotionSpan`: a span of motion or event activity (used by retention).
* :data:`OutboxMessage`: what a camera process appends to the node's outbox
  (:class:`EventMessage` | :class:`SegmentMessage` | :class:`ActivityMessage`), with a
  stable JSON encoding (:func:`encode` / :func:`decode`) and an idempotency key
  (:func:`message_key`) that every sink upserts by.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias


class Box(NamedTuple):
    """An axis-aligned box in pixels: ``(x0, y0)`` top-left, ``(x1, y1)`` bottom-right.

    A tuple ``(x0, y0, x1, y1)`` (it indexes and unpacks like one) with named fields.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        """Width in pixels (0 when inverted)."""
        return max(0.0, self.x1 - self.x0)

    @property
    def height(self) -> float:
        """Height in pixels (0 when inverted)."""
        return max(0.0, self.y1 - self.y0)

    @property
    def area(self) -> float:
        """Area in square pixels (0 for an empty or inverted box)."""
        return box_area(self)

    @property
    def center(self) -> tuple[float, float]:
        """Centre point ``(x, y)`` in pixels."""
        return ((self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0)

    @property
    def bottom_center(self) -> tuple[float, float]:
        """Where an object stands on the ground: the middle of the bottom edge."""
        return ((self.x0 + self.x1) / 2.0, self.y1)

    def iou(self, other: tuple[float, float, float, float]) -> float:
        """Intersection over union with ``other``, in ``[0, 1]``."""
        return box_iou(self, other)

EventChange: TypeAlias = Literal["start", "update", "end"]
"""Where an event is in its life when a message about it is sent."""

ActivityKind: TypeAlias = Literal["motion", "event"]
"""What a :class:`MotionSpan` records: motion in the picture, or an object event."""

EVENT_CHANGES: tuple[EventChange, ...] = ("start", "update", "end")
ACTIVITY_KINDS: tuple[ActivityKind, ...] = ("motion", "event")


def box_area(box: tuple[float, float, float, float]) -> float:
    """Area of ``box`` in square pixels (0 for an empty or inverted box)."""
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two boxes, in ``[0, 1]`` (0 when both are empty)."""
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0.0 else 0.0


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found in one image.

    ``label`` is the class name (e.g. ``"person"``) and ``label_id`` the model's
    class index; ``score`` is the confidence in ``[0, 1]``; ``box`` is
    ``(x0, y0, x1, y1)`` in pixels of the image given to the detector (not of
    the model's input), clipped to that image. A plain 4-tuple given as ``box`` becomes a :class:`Box`.
    """

    label: str
    label_id: int
    score: float
    box: Box

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Detection score must be in [0, 1], got {self.score!r}")
        if len(self.box) != 4:
            raise ValueError(f"Detection box must be (x0, y0, x1, y1), got {self.box!r}")
        if not isinstance(self.box, Box):
            object.__setattr__(self, "box", Box(*self.box))

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return max(0.0, self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return max(0.0, self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return box_area(self.box)

    @property
    def center(self) -> tuple[float, float]:
        """Box centre ``(x, y)`` in pixels."""
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)

    def iou(self, other: Detection | Box) -> float:
        """Intersection over union with another detection or box, in ``[0, 1]``."""
        return box_iou(self.box, other.box if isinstance(other, Detection) else other)


@dataclass
class Event:
    """An object event on one camera; ``start``/``end`` are epoch seconds.

    ``end`` is None while the event runs; ``data`` holds extra JSON-ready values
    (``track_id``, ``best_seq``, ``box``, ``last_seen`` ...); ``snapshot`` is the path of
    its best frame as the pipeline wrote it (private to the node); ``retained`` marks an
    event the user wants kept.
    """

    id: str
    camera: str
    label: str
    start: float
    end: float | None = None
    top_score: float = 0.0
    zones: list[str] = field(default_factory=list)
    snapshot: str | None = None
    retained: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The REST/WebSocket shape (the snapshot's path stays private: ``has_snapshot``)."""
        return {
            "id": self.id, "camera": self.camera, "label": self.label, "start": self.start,
            "end": self.end, "top_score": self.top_score, "zones": list(self.zones),
            "has_snapshot": self.snapshot is not None, "retained": self.retained, "data": dict(self.data),
        }

    def to_json(self) -> dict[str, Any]:
        """Every field as JSON-ready values (the outbox's encoding)."""
        return {
            "id": self.id, "camera": self.camera, "label": self.label, "start": self.start,
            "end": self.end, "top_score": self.top_score, "zones": list(self.zones),
            "snapshot": self.snapshot, "retained": self.retained, "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Event:
        """The event :meth:`to_json` wrote; ValueError/KeyError/TypeError if malformed."""
        zones = d.get("zones") or []
        if not isinstance(zones, list) or not all(isinstance(z, str) for z in zones):
            raise ValueError(f"event zones must be a list of strings, got {zones!r}")
        end = d.get("end")
        data = d.get("data") or {}
        if not isinstance(data, dict):
            raise TypeError("event data must be an object")
        snapshot = d.get("snapshot")
        ev = cls(
            id=_text(d["id"], "event id"), camera=_text(d["camera"], "camera"),
            label=_text(d["label"], "label"), start=_seconds(d["start"], "start"),
            end=None if end is None else _seconds(end, "end"), top_score=float(d.get("top_score") or 0.0),
            zones=list(zones), snapshot=None if snapshot is None else str(snapshot),
            retained=bool(d.get("retained", False)), data=dict(data),
        )
        if ev.end is not None and ev.end < ev.start:
            raise ValueError(f"event end {ev.end} before start {ev.start}")
        return ev


@dataclass
class SegmentRecord:
    """One recording segment file: ``path`` relative to the recordings directory (unique).

    ``start``/``end`` are epoch seconds, ``size`` bytes; ``id`` is set by the store.
    """

    camera: str
    path: str
    start: float
    end: float
    size: int
    frames: int = 0
    keyframes: int = 0
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The segment as JSON-ready values (without the store's ``id``)."""
        return {"camera": self.camera, "path": self.path, "start": self.start, "end": self.end,
                "size": self.size, "frames": self.frames, "keyframes": self.keyframes}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SegmentRecord:
        """The segment :meth:`to_json` wrote; ValueError/KeyError/TypeError if malformed."""
        unknown = set(d) - {"camera", "path", "start", "end", "size", "frames", "keyframes", "id"}
        if unknown:
            raise ValueError(f"unknown segment fields {sorted(unknown)}")
        return cls(camera=_text(d["camera"], "camera"), path=_text(d["path"], "path"),
                   start=_seconds(d["start"], "start"), end=_seconds(d["end"], "end"),
                   size=int(d["size"]), frames=int(d.get("frames", 0)), keyframes=int(d.get("keyframes", 0)))


@dataclass
class MotionSpan:
    """A span ``[start, end]`` (epoch seconds) of motion or of an event on one camera.

    Keyed by (camera, kind, start); ``id`` is set by the store. ``open``: the
    activity is still going on and ``end`` is only how far it has lasted so
    far (the span is journalled again with a later end while it lasts, and
    once more with ``open`` false when it ends).
    """

    camera: str
    kind: ActivityKind
    start: float
    end: float
    id: int | None = None
    open: bool = False

    def to_json(self) -> dict[str, Any]:
        """The span as JSON-ready values (without the store's ``id``; ``open`` only when true)."""
        d: dict[str, Any] = {"camera": self.camera, "kind": self.kind, "start": self.start, "end": self.end}
        if self.open:  # absent means closed: the encoding of a closed span is unchanged
            d["open"] = True
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MotionSpan:
        """The span :meth:`to_json` wrote; ValueError/KeyError/TypeError if malformed."""
        kind = d["kind"]
        if kind not in ACTIVITY_KINDS:
            raise ValueError(f"activity kind must be 'motion' or 'event', got {kind!r}")
        start, end = _seconds(d["start"], "start"), _seconds(d["end"], "end")
        if not end >= start:
            raise ValueError(f"activity end {end} before start {start}")
        is_open = d.get("open", False)
        if not isinstance(is_open, bool):
            raise TypeError(f"activity open must be true or false, got {is_open!r}")
        return cls(camera=_text(d["camera"], "camera"), kind=kind, start=start, end=end, open=is_open)


@dataclass(frozen=True)
class EventMessage:
    """An event started, changed or ended (``type``), with its state after the change."""

    type: EventChange
    event: Event


@dataclass(frozen=True)
class SegmentMessage:
    """A recording segment was finished and renamed into place."""

    segment: SegmentRecord


@dataclass(frozen=True)
class ActivityMessage:
    """A span of motion or of an event: ended, or still open and lasting at least until its end."""

    span: MotionSpan


OutboxMessage: TypeAlias = EventMessage | SegmentMessage | ActivityMessage
"""What camera processes append to the node's outbox."""

MessageKind: TypeAlias = Literal["event", "segment", "activity"]


def message_kind(message: OutboxMessage) -> MessageKind:
    """``"event"``, ``"segment"`` or ``"activity"``."""
    if isinstance(message, EventMessage):
        return "event"
    if isinstance(message, SegmentMessage):
        return "segment"
    return "activity"


def message_key(message: OutboxMessage) -> str:
    """The identity a sink upserts by: the event id, the segment path, or camera/kind/start."""
    if isinstance(message, EventMessage):
        return message.event.id
    if isinstance(message, SegmentMessage):
        return message.segment.path
    s = message.span
    return f"{s.camera}/{s.kind}/{s.start!r}"


def to_json(message: OutboxMessage) -> dict[str, Any]:
    """The message as a JSON-ready dict with a ``kind`` key (the stable outbox encoding)."""
    if isinstance(message, EventMessage):
        return {"kind": "event", "type": message.type, "event": message.event.to_json()}
    if isinstance(message, SegmentMessage):
        return {"kind": "segment", "segment": message.segment.to_json()}
    return {"kind": "activity", "span": message.span.to_json()}


def from_json(d: Mapping[str, Any]) -> OutboxMessage:
    """The message :func:`to_json` wrote; ValueError/KeyError/TypeError if malformed."""
    if not isinstance(d, Mapping):
        raise TypeError(f"a message must be an object, got {type(d).__name__}")
    kind = d.get("kind")
    if kind == "event":
        change = d.get("type")
        if change not in EVENT_CHANGES:
            raise ValueError(f"event type must be one of {EVENT_CHANGES}, got {change!r}")
        return EventMessage(change, Event.from_json(_object(d["event"], "event")))
    if kind == "segment":
        return SegmentMessage(SegmentRecord.from_json(_object(d["segment"], "segment")))
    if kind == "activity":
        return ActivityMessage(MotionSpan.from_json(_object(d["span"], "span")))
    raise ValueError(f"unknown message kind {kind!r}")


def encode(message: OutboxMessage) -> str:
    """The message as compact JSON text (stable: sorted keys)."""
    return json.dumps(to_json(message), separators=(",", ":"), sort_keys=True, allow_nan=False)


def decode(text: str | bytes) -> OutboxMessage:
    """The message :func:`encode` wrote; ValueError/KeyError/TypeError if malformed."""
    return from_json(json.loads(text))


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return out
