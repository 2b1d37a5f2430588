"""Frigate ``objects`` and ``motion`` to the settings of camfleet's ``detect`` and ``motion`` elements.

* ``objects.track`` (default ``[person]``) becomes ``detect.labels``.
* ``filters.LABEL.min_score`` becomes ``detect.min_score.LABEL`` (Frigate's
  default 0.5 is camfleet's ``default``).
* ``filters.LABEL.threshold`` (Frigate's median score for a true positive) has
  no camfleet counterpart: noted; ``events.min_frames`` is what confirms an
  object in camfleet.
* ``filters.LABEL.min_area``: pixels of the detect frame (an integer above 1)
  or, from 0.14, a fraction of it (at most 1). camfleet has one
  ``min_area`` for every label, as a fraction: the smallest of the labels'
  (the filter that drops the least), with a note when they differ.
* ``max_area``, ``min_ratio``, ``max_ratio`` and per-label ``mask`` have no
  counterpart: noted.
* ``motion.threshold`` (1-255) becomes ``motion.threshold``; the rest of
  ``motion`` is noted, except ``mask`` (the camera's masks, see
  :mod:`.geometry`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camfleet.importers.notes import Notes

from .geometry import Size

__all__ = ["detect_settings", "motion_settings"]

_DEFAULT_SCORE = 0.5  # Frigate's min_score default, and camfleet's
_DEFAULT_TRACK = ["person"]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _area_fraction(value: float, size: Size) -> float:
    if value > 1:  # pixels of the detect frame
        return min(value / (size[0] * size[1]), 1.0)
    return value


def detect_settings(objects: Mapping[str, Any], size: Size, key: str, notes: Notes) -> dict[str, Any]:
    """The ``detect`` element's label, score and area settings for a camera's (merged) ``objects``."""
    track = objects.get("track", _DEFAULT_TRACK)
    labels = [str(t) for t in track] if isinstance(track, list) else list(_DEFAULT_TRACK)
    scores: dict[str, float] = {"default": _DEFAULT_SCORE}
    areas: dict[str, float] = {}
    filters = objects.get("filters")
    for label, flt in (filters.items() if isinstance(filters, Mapping) else []):
        where = f"{key}.filters.{label}"
        if not isinstance(flt, Mapping):
            continue
        score = _number(flt.get("min_score"))
        if score is not None:
            scores[str(label)] = min(max(score, 0.0), 1.0)
        if "threshold" in flt:
            notes.unmapped(f"{where}.threshold", "camfleet has no median-score rule; an object is confirmed "
                                                 "after pipelines' events.min_frames detections instead")
        area = _number(flt.get("min_area"))
        if area is not None and label in labels:
            areas[str(label)] = _area_fraction(area, size)
        for other in ("max_area", "min_ratio", "max_ratio", "mask", "raw_mask"):
            if other in flt:
                notes.unmapped(f"{where}.{other}", "camfleet's detect element has no such per-label filter")
    settings: dict[str, Any] = {"labels": labels}
    settings["min_score"] = scores if len(scores) > 1 else scores["default"]
    if areas:
        smallest = min(areas.values())
        settings["min_area"] = round(smallest, 8)
        if len(set(areas.values())) > 1:
            notes.converted(f"{key}.filters.*.min_area",
                            f"camfleet has one min_area for every label: the smallest, {smallest:.6g} of "
                            "the frame, is used")
    for other in sorted(set(objects) - {"track", "filters", "mask"}):  # the mask is the camera's masks
        notes.unmapped(f"{key}.{other}", "camfleet has no such object setting")
    return settings


def motion_settings(motion: Mapping[str, Any], key: str, notes: Notes) -> dict[str, Any]:
    """The ``motion`` element's settings for a camera's (merged) Frigate ``motion``."""
    out: dict[str, Any] = {}
    threshold = _number(motion.get("threshold"))
    if threshold is not None:
        out["threshold"] = int(min(max(threshold, 1), 255))
    for other in sorted(set(motion) - {"threshold", "mask", "enabled"}):
        notes.unmapped(f"{key}.{other}", "camfleet's motion element tunes this itself or has no such setting")
    if motion.get("enabled") is False:
        notes.unmapped(f"{key}.enabled", "camfleet cannot turn motion off while detection runs on motion")
    return out
