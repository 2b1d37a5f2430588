"""Response and request models of the REST API (they make the OpenAPI document precise)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from camfleet.store import EventRecord, SegmentRecord


class Issue(BaseModel):
    """One configuration problem: where (path, and line/column for YAML the caller sent) and what."""

    path: str
    line: int | None = None
    column: int | None = None
    message: str
    suggestion: str | None = None


class ValidationResult(BaseModel):
    """The outcome of validating a configuration."""

    valid: bool
    issues: list[Issue] = Field(default_factory=list)


class Event(BaseModel):
    """An object event (times in epoch seconds; ``end`` is null while it runs)."""

    id: str
    camera: str
    label: str
    start: float
    end: float | None
    top_score: float
    zones: list[str]
    has_snapshot: bool
    retained: bool
    data: dict[str, Any]
    reviewed: bool = False

    @classmethod
    def of(cls, record: EventRecord, reviewed: bool = False) -> Event:
        """The API view of a stored event (the snapshot's file path stays private)."""
        return cls(**record.public(), reviewed=reviewed)


class EventPage(BaseModel):
    """One page of events, newest first, and how many match in all."""

    items: list[Event]
    total: int
    limit: int
    offset: int


class ReviewedBody(BaseModel):
    """Mark events reviewed (or not again): one (the path's) or up to 500 by id."""

    reviewed: bool = True
    ids: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]] = Field(
        default_factory=list, max_length=500)


class RetainBody(BaseModel):
    """Keep an event (and its clip) past retention, or not."""

    retained: bool


class Segment(BaseModel):
    """A recording segment (``path`` is relative to the recordings directory)."""

    id: int | None
    camera: str
    path: str
    start: float
    end: float
    size: int
    frames: int
    keyframes: int

    @classmethod
    def of(cls, record: SegmentRecord) -> Segment:
        """The API view of a stored segment."""
        return cls(id=record.id, camera=record.camera, path=record.path, start=record.start,
                   end=record.end, size=record.size, frames=record.frames, keyframes=record.keyframes)


class TimelineEvent(BaseModel):
    """An event as a timeline marks it (times in epoch seconds; ``end`` null while it runs)."""

    id: str
    label: str
    start: float
    end: float | None
    top_score: float
    zones: list[str]


class Timeline(BaseModel):
    """A camera's recorded spans, motion and events over a span (epoch seconds)."""

    camera: str
    start: float
    end: float
    recorded: list[list[float]]
    motion: list[list[float]]
    events: list[TimelineEvent]
    events_truncated: bool


class CameraView(BaseModel):
    """A camera's configuration (credentials masked), as applied and as staged."""

    name: str
    config: dict[str, Any] | None = Field(description="in force now (null: not applied yet)")
    staged: dict[str, Any] | None = Field(default=None, description="the pending edit, if any")
    pending: Literal["none", "add", "change", "delete"] = "none"


class Change(BaseModel):
    """One pending camera change."""

    camera: str
    action: Literal["add", "change", "delete"]
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class Changes(BaseModel):
    """Every pending camera change."""

    changes: list[Change]


class ApplyResult(BaseModel):
    """What applying the staged changes did."""

    applied: bool
    generation: int
    added: list[str]
    removed: list[str]
    restarted: list[str]
    updated: list[str]
    errors: list[str]


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "unavailable"]
    checks: dict[str, bool] = Field(default_factory=dict)


class Me(BaseModel):
    """Who the caller is, and whether the API is open."""

    name: str
    role: Literal["admin", "viewer"]
    open: bool


class CameraStorage(BaseModel):
    """One camera's recordings."""

    segments: int
    bytes: int


class Storage(BaseModel):
    """Disk space where recordings are written, and what each camera's recordings take."""

    recordings_dir_total_bytes: int | None
    recordings_dir_free_bytes: int | None
    events: int
    cameras: dict[str, CameraStorage]
