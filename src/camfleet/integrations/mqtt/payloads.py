"""Frigate's MQTT payloads from camfleet's events (pure functions, no client).

:func:`frigate_object` maps a :class:`~camfleet.vocabulary.Event` onto the object Frigate puts
in ``before``/``after`` of ``<prefix>/events``. What camfleet knows maps truthfully; what it
does not track gets Frigate's neutral value (see :data:`NEUTRAL_FIELDS` and docs/mqtt.md):

* ``box`` / ``area`` / ``ratio`` / ``score``: of the event's best sighting (camfleet reports the
  best box and score, not each frame's); ``region`` is that box too (the detector's crop is not
  kept); pixels of the detect frame, ``[x1, y1, x2, y2]``.
* ``frame_time``: when the object was last seen; ``snapshot.frame_time``: when the best sighting
  was captured.
* ``entered_zones``: the zones the object entered; ``current_zones``: the same while the event
  is active (camfleet does not report leaving a zone), ``[]`` once it ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from camfleet.vocabulary import Event

__all__ = ["NEUTRAL_FIELDS", "Publication", "frigate_object"]

NEUTRAL_FIELDS: dict[str, Any] = {
    "sub_label": None,
    "stationary": False,
    "motionless_count": 0,
    "position_changes": 0,
    "attributes": {},
    "current_attributes": [],
    "pending_loitering": False,
    "max_severity": None,
    "current_estimated_speed": 0,
    "average_estimated_speed": 0,
    "velocity_angle": 0,
    "path_data": [],
    "recognized_license_plate": None,
}
"""Frigate object fields camfleet does not track, with the value Frigate gives an object without them."""


@dataclass(frozen=True)
class Publication:
    """One MQTT message to send: ``topic`` without the prefix, its payload, whether retained."""

    topic: str
    payload: bytes | str
    retain: bool = False


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _box(data: dict[str, Any]) -> list[int] | None:
    box = data.get("box")
    if isinstance(box, list | tuple) and len(box) == 4 and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in box):
        return [round(float(v)) for v in box]
    return None


def frigate_object(event: Event, *, has_clip: bool = False) -> dict[str, Any]:
    """``event`` as Frigate's tracked object dict (``after`` of ``<prefix>/events``).

    ``has_clip``: whether the camera records (so the event's span is kept in recordings).
    Times are epoch seconds, boxes pixels of the detect frame.
    """
    data = event.data
    box = _box(data) or [0, 0, 0, 0]
    width, height = max(0, box[2] - box[0]), max(0, box[3] - box[1])
    area = width * height
    ratio = round(width / height, 2) if height else 0.0
    last_seen = _number(data.get("last_seen"), event.start)
    frame_time = event.end if event.end is not None else max(last_seen, event.start)
    active = event.end is None
    has_snapshot = event.snapshot is not None
    score = float(event.top_score)
    obj: dict[str, Any] = {
        "id": event.id,
        "camera": event.camera,
        "frame_time": frame_time,
        "snapshot": ({"frame_time": _number(data.get("best_time"), frame_time), "box": box, "area": area,
                      "region": box, "score": score, "attributes": []} if has_snapshot else None),
        "label": event.label,
        "top_score": score,
        "false_positive": False,  # camfleet opens an event only once the object is confirmed
        "start_time": event.start,
        "end_time": event.end,
        "score": score,
        "computed_score": score,
        "box": box,
        "area": area,
        "ratio": ratio,
        "region": box,
        "active": active,
        "current_zones": list(event.zones) if active else [],
        "entered_zones": list(event.zones),
        "has_clip": has_clip,
        "has_snapshot": has_snapshot,
    }
    for key, value in NEUTRAL_FIELDS.items():
        obj[key] = value.copy() if isinstance(value, dict | list) else value
    return obj
