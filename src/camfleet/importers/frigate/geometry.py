"""Frigate zone and mask coordinates to camfleet's normalised polygons.

Frigate writes a polygon as one string ``"x1,y1,x2,y2,..."`` or as a list of
``"x,y"`` strings. Before 0.14 the numbers are pixels of the detect frame
(``detect.width`` x ``detect.height``); from 0.14 they are fractions 0..1.
A polygon is read as pixels when any number in it is above 1 (whatever the
version: a 0.14+ file may still carry a pixel mask its migration left), and
divided by the detect size; relative ones are kept as they are.

Masks come as one polygon string, a list of polygon strings (a list of
``"x,y"`` points or of numbers is read as one polygon), or (0.18) a
mapping of named masks, each a polygon or ``{coordinates: ..., enabled: ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from camfleet.importers.notes import Notes

__all__ = ["Size", "masks", "polygon"]

Size = tuple[int, int]
"""The detect frame's (width, height), in pixels."""

Polygon = list[list[float]]


def _numbers(coordinates: Any) -> list[float] | None:
    """The flat list of numbers of a Frigate polygon, or None when it is not one."""
    if isinstance(coordinates, str):
        parts = coordinates.split(",")
    elif isinstance(coordinates, list) and all(isinstance(p, str) for p in coordinates):
        parts = [n for p in coordinates for n in p.split(",")]  # ["x,y", "x,y", ...]
    elif isinstance(coordinates, list) and all(isinstance(p, int | float) for p in coordinates):
        parts = [str(p) for p in coordinates]  # a flow list of numbers: [x1, y1, x2, y2, ...]
    else:
        return None
    try:
        return [float(p) for p in parts if p.strip()]
    except ValueError:
        return None


def polygon(coordinates: Any, size: Size, key: str, notes: Notes) -> Polygon | None:
    """``coordinates`` as ``[[x, y], ...]`` normalised 0..1, or None (with a note) when unusable."""
    nums = _numbers(coordinates)
    if nums is None or len(nums) % 2 or len(nums) < 6:
        notes.unmapped(key, "not a polygon of at least 3 'x,y' points")
        return None
    pixels = any(n > 1 for n in nums)
    if pixels:
        width, height = size
        notes.converted(key, f"pixel coordinates divided by the detect size {width}x{height}")
        nums = [n / (width if i % 2 == 0 else height) for i, n in enumerate(nums)]
    if any(n < 0 or n > 1 for n in nums):
        notes.converted(key, "points outside the frame moved onto its edge")
    # rounded: the file stays readable, and 1e-6 of a frame is far below a pixel
    return [[round(min(max(nums[i], 0.0), 1.0), 6), round(min(max(nums[i + 1], 0.0), 1.0), 6)]
            for i in range(0, len(nums), 2)]


def _one_polygon(value: Any) -> bool:
    """A list that is one polygon: numbers, or ``"x,y"`` points (not a list of polygon strings)."""
    if not isinstance(value, list) or not value:
        return False
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
        return True
    return all(isinstance(v, str) and v.count(",") == 1 for v in value)


def masks(value: Any, size: Size, key: str, notes: Notes) -> list[Polygon]:
    """Every polygon of a Frigate ``mask`` (string, list of strings, or 0.18 named masks), normalised."""
    if value is None:
        return []
    if isinstance(value, str) or _one_polygon(value):
        found = polygon(value, size, key, notes)
        return [found] if found else []
    if isinstance(value, list):
        out: list[Polygon] = []
        for i, item in enumerate(value):
            found = polygon(item, size, f"{key}[{i}]", notes)
            if found:
                out.append(found)
        return out
    if isinstance(value, Mapping):  # 0.18: {name: polygon | {coordinates, enabled, ...}}
        out = []
        for name, item in value.items():
            where = f"{key}.{name}"
            coords = item
            if isinstance(item, Mapping):
                if item.get("enabled", True) is False:
                    notes.unmapped(where, "a disabled mask; camfleet masks are always on (left out)")
                    continue
                coords = item.get("coordinates")
            found = polygon(coords, size, where, notes)
            if found:
                out.append(found)
        if out:
            notes.converted(key, "named masks become camfleet's unnamed mask list (names dropped)")
        return out
    notes.unmapped(key, "not a mask camfleet can read (a string, a list, or named masks)")
    return []
