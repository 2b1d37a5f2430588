"""Plain records the store reads and writes (no SQLAlchemy types leak out of the store)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from camfleet.redact import mask_text
from camfleet.vocabulary import Event, MotionSpan, SegmentRecord

EventRecord = Event
"""The store's name for :class:`camfleet.vocabulary.Event` (the same type)."""
ActivityRecord = MotionSpan
"""The store's name for :class:`camfleet.vocabulary.MotionSpan` (the same type)."""
__all__ = ["ActivityRecord", "CameraRow", "EventRecord", "SegmentRecord", "SnapshotRecord", "TokenRow"]


@dataclass
class CameraRow:
    """One stored camera: its name, its config dict and when it was last written (epoch seconds)."""

    name: str
    config: dict[str, Any]
    updated: float

    def __repr__(self) -> str:
        config = mask_text(repr(self.config))
        return f"CameraRow(name={self.name!r}, config={config}, updated={self.updated!r})"


@dataclass
class TokenRow:
    """One API token as listed: never the clear token, never its hash.

    ``created``/``revoked`` are epoch seconds (``revoked`` None while the token is valid).
    """

    id: int
    name: str
    role: Literal["admin", "viewer"]
    created: float
    revoked: float | None = None

    @property
    def active(self) -> bool:
        """Whether the token is still valid (not revoked)."""
        return self.revoked is None


@dataclass
class SnapshotRecord:
    """An event's snapshot: the JPEG of its best frame (``path`` as the pipeline wrote it).

    ``updated`` is when it last improved, epoch seconds.
    """

    event_id: str
    camera: str
    path: str
    updated: float
