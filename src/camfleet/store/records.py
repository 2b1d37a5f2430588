"""Plain records the store reads and writes (no SQLAlchemy types leak out of the store)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from camfleet.redact import mask_text

_PIPELINE_KEYS = frozenset(
    {"id", "camera", "label", "start_ns", "end_ns", "top_score", "zones", "snapshot"}
)


@dataclass
class EventRecord:
    """An object event from a pipeline; times are epoch seconds.

    ``end`` is None while the event is running; ``data`` holds extra JSON-ready values
    (track_id, best_seq, box, ...); ``retained`` marks an event the user wants kept.
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

    @classmethod
    def from_pipeline(cls, public: Mapping[str, Any]) -> EventRecord:
        """An event from ``camfleet.pipeline`` ``ObjectEvent.public()`` (nanoseconds become seconds).

        Keys other than the columns (track_id, best_seq, ...) go into ``data``.
        Raises KeyError/TypeError/ValueError on a malformed dict.
        """
        end_ns = public.get("end_ns")
        zones = public.get("zones") or []
        if not isinstance(zones, list | tuple) or not all(isinstance(z, str) for z in zones):
            raise ValueError(f"event zones must be a list of strings, got {zones!r}")
        snapshot = public.get("snapshot")
        return cls(
            id=_text(public["id"], "id"),
            camera=_text(public["camera"], "camera"),
            label=_text(public["label"], "label"),
            start=int(public["start_ns"]) / 1e9,
            end=None if end_ns is None else int(end_ns) / 1e9,
            top_score=float(public.get("top_score") or 0.0),
            zones=list(zones),
            snapshot=None if snapshot is None else str(snapshot),
            data={k: v for k, v in public.items() if k not in _PIPELINE_KEYS},
        )


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"event {what} must be a non-empty string, got {value!r}")
    return value


@dataclass
class SegmentRecord:
    """One recording segment file: ``path`` relative to the recordings directory.

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


@dataclass
class ActivityRecord:
    """A span (epoch seconds) with motion or an event on one camera, used by recording retention."""

    camera: str
    kind: Literal["motion", "event"]
    start: float
    end: float
    id: int | None = None


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
