"""Frigate ``record`` (every release's retention keys) to camfleet's ``record`` section.

Forms accepted (a camera's ``record`` merged over the global one first):

* 0.13 and older: ``retain: {days, mode}`` (``mode``: ``all`` | ``motion`` |
  ``active_objects``) for everything, ``events: {retain: {default, mode,
  objects}, pre_capture, post_capture}`` for event clips;
* 0.14: the same keys (``version: 0.14``);
* 0.15 and 0.16: ``retain: {days, mode}`` plus ``alerts: {retain: {days, mode},
  pre_capture, post_capture}`` and ``detections: {...}`` in place of ``events``;
* 0.17 and later: ``continuous: {days}``, ``motion: {days}``, ``alerts`` and
  ``detections`` as in 0.15.

camfleet keeps three classes of footage: ``retain_days: {continuous, motion,
events}``. ``retain.days`` goes to ``continuous`` when its mode is ``all``, to
``motion`` when it is ``motion`` and to ``events`` for ``active_objects``;
alerts, detections and events go to ``events`` (the longer of alerts and
detections: camfleet does not tell them apart). The mode is the widest class
kept: ``continuous`` if continuous footage is kept at all, else ``motion``,
else ``events``. Frigate's defaults fill what a file leaves out (0 days of
continuous/motion footage, 10 days of events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camfleet.importers.notes import Notes

from .version import FrigateVersion

__all__ = ["convert_record"]

_EVENT_DAYS_DEFAULT = 10.0  # Frigate's default for events, alerts and detections
_MAX_DAYS = 3650.0  # camfleet's bound
_MAX_CAPTURE = 300.0


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _days(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _retain_class(mode: Any) -> str:
    # Frigate's retain modes to camfleet's footage classes
    return {"all": "continuous", "motion": "motion", "active_objects": "events"}.get(str(mode), "continuous")


def convert_record(record: Mapping[str, Any], version: FrigateVersion, key: str,
                   notes: Notes) -> dict[str, Any]:
    """The camfleet ``record`` of a camera whose (merged) Frigate ``record`` is ``record``."""
    retain = {"continuous": 0.0, "motion": 0.0, "events": 0.0}
    event_days: list[float] = []
    captures: dict[str, float] = {}

    if version >= (0, 17):
        for cls in ("continuous", "motion"):
            days = _days(_map(record.get(cls)).get("days"))
            if days is not None:
                retain[cls] = days
    if "retain" in record:  # 0.16 and older (a 0.17 file that still has it is read the old way too)
        old = _map(record.get("retain"))
        days = _days(old.get("days"))
        if days is not None:
            cls = _retain_class(old.get("mode", "all"))
            retain[cls] = max(retain[cls], days)
    if "events" in record:  # 0.14 and older
        events = _map(record["events"])
        ev_retain = _map(events.get("retain"))
        days = _days(ev_retain.get("default"))
        event_days.append(_EVENT_DAYS_DEFAULT if days is None else days)
        if ev_retain.get("objects"):
            notes.unmapped(f"{key}.events.retain.objects",
                           "camfleet keeps event footage for the same number of days whatever the label")
        captures.update({k: float(events[k]) for k in ("pre_capture", "post_capture")
                         if _days(events.get(k)) is not None})
    for review in ("alerts", "detections"):  # 0.15 and later
        if review in record:
            section = _map(record[review])
            days = _days(_map(section.get("retain")).get("days"))
            event_days.append(_EVENT_DAYS_DEFAULT if days is None else days)
            for k in ("pre_capture", "post_capture"):
                value = _days(section.get(k))
                if value is not None:  # the wider window of alerts and detections
                    captures[k] = max(captures.get(k, 0.0), value)
    retain["events"] = max(event_days) if event_days else _EVENT_DAYS_DEFAULT
    if "alerts" in record and "detections" in record:
        notes.converted(f"{key}.alerts/detections",
                        "camfleet has one class of event footage: kept for the longer of the two")

    for cls, days in retain.items():
        if days > _MAX_DAYS:
            notes.converted(f"{key}", f"{cls} retention of {days:g} days capped at {_MAX_DAYS:g}")
            retain[cls] = _MAX_DAYS
    for k, seconds in list(captures.items()):
        if seconds > _MAX_CAPTURE:
            notes.converted(f"{key}.{k}", f"capped at {_MAX_CAPTURE:g} s")
            captures[k] = _MAX_CAPTURE

    mode = "continuous" if retain["continuous"] > 0 else "motion" if retain["motion"] > 0 else "events"
    out: dict[str, Any] = {"enabled": bool(record.get("enabled", False)), "mode": mode}
    out.update(captures)
    out["retain_days"] = retain
    for unmapped in ("export", "sync_recordings", "expire_interval", "preview"):
        if unmapped in record:
            notes.unmapped(f"{key}.{unmapped}", "camfleet has no such recording setting")
    return out
