"""Events: search with filters and pages, one event, its snapshot, the retain flag, its clip."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse

from ..auth import Principal, authorize
from ..clips import clip_of_event
from ..context import Ctx
from ..files import file_response, safe_file
from ..schemas import Event, EventPage, RetainBody, ReviewedBody
from .common import EventId, find_event

router = APIRouter(prefix="/api/events", tags=["events"], dependencies=[Depends(authorize)])

_MEDIA = {"content": {"image/jpeg": {}}, "description": "the image"}
_VIDEO = {"content": {"video/mp4": {}}, "description": "the clip (Range requests honoured)"}
Name = Annotated[str | None, Query(max_length=128)]
Epoch = Annotated[float | None, Query(ge=0, le=1e11, description="epoch seconds")]


@router.get("", response_model=EventPage)
def list_events(
    ctx: Ctx,
    camera: Name = None,
    label: Name = None,
    zone: Name = None,
    after: Epoch = None,
    before: Epoch = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    min_score: Annotated[float | None, Query(ge=0, le=1, description="top score at least (0..1)")] = None,
    reviewed: Annotated[bool | None, Query(description="only events (not) marked reviewed")] = None,
) -> EventPage:
    """Events newest first; ``after``/``before`` bound the start time (epoch seconds)."""
    records = ctx.store.query_events(camera=camera, label=label, zone=zone, after=after, before=before,
                                     min_score=min_score, reviewed=reviewed, limit=limit, offset=offset)
    total = ctx.store.count_events(camera=camera, label=label, zone=zone, after=after, before=before,
                                   min_score=min_score, reviewed=reviewed)
    done = ctx.store.reviewed_ids([r.id for r in records])
    return EventPage(items=[Event.of(r, r.id in done) for r in records], total=total, limit=limit,
                     offset=offset)


@router.post("/reviewed", response_model=dict[str, int])
def mark_reviewed(body: ReviewedBody, ctx: Ctx) -> dict[str, int]:
    """Mark the events ``ids`` reviewed (or not again); ``{"updated": n}`` of those that exist."""
    return {"updated": ctx.store.set_events_reviewed(body.ids, body.reviewed)}


@router.get("/{event_id}", response_model=Event, responses={404: {"description": "no such event"}})
def get_event(event_id: EventId, ctx: Ctx) -> Event:
    """One event."""
    return Event.of(find_event(ctx.store, event_id), bool(ctx.store.reviewed_ids([event_id])))


@router.put("/{event_id}/reviewed", response_model=Event, responses={404: {"description": "no such event"}})
def set_reviewed(event_id: EventId, body: ReviewedBody, ctx: Ctx) -> Event:
    """Mark the event reviewed (``{"reviewed": true}``) or not."""
    if not ctx.store.set_events_reviewed([event_id], body.reviewed):
        raise HTTPException(404, "no such event")
    return Event.of(find_event(ctx.store, event_id), body.reviewed)


@router.get("/{event_id}/snapshot.jpg", response_class=FileResponse,
            responses={200: _MEDIA, 404: {"description": "no such event or snapshot"}})
def snapshot(event_id: EventId, ctx: Ctx) -> FileResponse:
    """The event's best frame (JPEG), from ``<data_dir>/snapshots/<camera>/<event id>.jpg``."""
    event = find_event(ctx.store, event_id)
    path = safe_file(ctx.snapshots_dir, f"{event.camera}/{event.id}.jpg")
    return file_response(path, "image/jpeg")


@router.put("/{event_id}/retain", response_model=Event, responses={404: {"description": "no such event"}})
def retain(event_id: EventId, body: RetainBody, ctx: Ctx) -> Event:
    """Keep the event (and its recording) past retention, or release it."""
    find_event(ctx.store, event_id)
    if not ctx.store.set_event_retained(event_id, body.retained):
        raise HTTPException(404, "no such event")
    return Event.of(find_event(ctx.store, event_id), bool(ctx.store.reviewed_ids([event_id])))


@router.get("/{event_id}/clip.mp4", response_class=FileResponse,
            responses={200: _VIDEO, 404: {"description": "no such event or no recording of it"}})
def event_clip(event_id: EventId, ctx: Ctx,
               principal: Annotated[Principal, Depends(authorize)]) -> FileResponse:
    """The event's clip (with pre/post capture, widened to whole segments), from the recordings."""
    event = find_event(ctx.store, event_id)
    return clip_of_event(ctx, event, principal.name)  # exports are capped per token (api/clips.py)
