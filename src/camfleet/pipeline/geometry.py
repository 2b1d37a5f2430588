"""Polygons in normalised 0..1 coordinates: rasterised masks and point tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skimage.draw import polygon2mask
from skimage.measure import points_in_poly

Polygon = Sequence[Sequence[float]]


def mask_image(polygons: Sequence[Polygon], height: int, width: int) -> np.ndarray:
    """A boolean HxW image, True inside any of ``polygons`` (normalised coordinates)."""
    out = np.zeros((height, width), bool)
    for poly in polygons:
        pts = np.asarray(poly, float) * [width, height]
        # skimage wants (row, col)
        out |= polygon2mask((height, width), pts[:, ::-1])  # type: ignore[no-untyped-call]
    return out


def inside(polygon: Polygon, x: float, y: float) -> bool:
    """True if the normalised point (x, y) lies inside ``polygon``."""
    hit = points_in_poly(np.array([[x, y]]), np.asarray(polygon, float))  # type: ignore[no-untyped-call]
    return bool(hit[0])
