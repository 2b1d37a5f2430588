"""What a detector returns: :class:`Detection`, and box helpers (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

Box = tuple[float, float, float, float]
"""An axis-aligned box ``(x0, y0, x1, y1)`` in pixels, ``x0 <= x1`` and ``y0 <= y1``."""


def box_area(box: Box) -> float:
    """Area of ``box`` in square pixels (0 for an empty or inverted box)."""
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def box_iou(a: Box, b: Box) -> float:
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
    the model's input), clipped to that image.
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
