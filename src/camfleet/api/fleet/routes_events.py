"""Events from every node, from the central database: the node API's filters, paging and shapes."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from camfleet.fleetstore.events import get_event, page_events

from ..auth import authorize
from ..routers.common import EventId
from ..routers.events import Epoch, Name
from .context import Fleet
from .media import MEDIA_RESPONSES as _MEDIA
from .media import proxy_of
from .schemas import FleetEvent, FleetEventPage, fleet_event

router = APIRouter(prefix="/api/events", tags=["events"], dependencies=[Depends(authorize)])


@router.get("", response_model=FleetEventPage)
async def list_events(
    ctx: Fleet,
    camera: Name = None,
    label: Name = None,
    zone: Name = None,
    after: Epoch = None,
    before: Epoch = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    min_score: Annotated[float | None, Query(ge=0, le=1, description="top score at least (0..1)")] = None,
    reviewed: Annotated[bool | None, Query(description="only events (not) marked reviewed")] = None,
    node: Name = None,
) -> FleetEventPage:
    """Events of the whole fleet newest first; ``after``/``before`` bound the start time (epoch seconds).

    ``node`` keeps one node's events. Nothing is marked reviewed on the coordinator yet, so
    ``reviewed=true`` finds none.
    """
    if reviewed:
        return FleetEventPage(items=[], total=0, limit=limit, offset=offset)
    rows, total = await asyncio.to_thread(
        page_events, ctx.store.engine, camera=camera, label=label, zone=zone, node=node, after=after,
        before=before, min_score=min_score, limit=limit, offset=offset)
    return FleetEventPage(items=[fleet_event(r) for r in rows], total=total, limit=limit, offset=offset)


async def _event(ctx: Fleet, event_id: str) -> FleetEvent:
    row = await asyncio.to_thread(get_event, ctx.store.engine, event_id)
    if row is None:
        raise HTTPException(404, "no such event")
    return fleet_event(row)


@router.get("/{event_id}", response_model=FleetEvent, responses={404: {"description": "no such event"}})
async def one_event(event_id: EventId, ctx: Fleet) -> FleetEvent:
    """One event, with the node that sent it."""
    return await _event(ctx, event_id)


@router.get("/{event_id}/snapshot.jpg", responses=_MEDIA)
async def snapshot(event_id: EventId, request: Request, ctx: Fleet) -> StreamingResponse:
    """The event's best frame (JPEG), streamed from the node that made it."""
    return await _from_event_node(request, ctx, event_id, "snapshot.jpg")


@router.get("/{event_id}/clip.mp4", responses=_MEDIA)
async def clip(event_id: EventId, request: Request, ctx: Fleet) -> StreamingResponse:
    """The event's clip, cut from its node's recordings and streamed from there (Range honoured)."""
    return await _from_event_node(request, ctx, event_id, "clip.mp4")


async def _from_event_node(request: Request, ctx: Fleet, event_id: str, what: str) -> StreamingResponse:
    node = (await _event(ctx, event_id)).node
    return await proxy_of(request).forward(request, node, f"/api/events/{quote(event_id, safe='')}/{what}")


_WRITES: dict[int | str, dict[str, Any]] = {501: {"description": "not on the coordinator yet"}}


@router.post("/reviewed", responses=_WRITES)
async def mark_reviewed() -> None:
    """Not on the coordinator yet: 501 (mark events reviewed on their node)."""
    raise HTTPException(501, "marking events reviewed is not available on the coordinator yet")


@router.put("/{event_id}/reviewed", responses=_WRITES)
async def set_reviewed(event_id: EventId) -> None:
    """Not on the coordinator yet: 501."""
    raise HTTPException(501, "marking events reviewed is not available on the coordinator yet")


@router.put("/{event_id}/retain", responses=_WRITES)
async def retain(event_id: EventId) -> None:
    """Not on the coordinator yet: 501 (retain events on their node)."""
    raise HTTPException(501, "retaining events is not available on the coordinator yet")
