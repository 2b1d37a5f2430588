"""What a detector returns: :class:`Detection`, and box helpers (pure functions).

The types live in :mod:`camfleet.vocabulary` (one home); this module names them for ``detect``.
"""

from __future__ import annotations

from camfleet.vocabulary import Box, Detection, box_area, box_iou

__all__ = ["Box", "Detection", "box_area", "box_iou"]
