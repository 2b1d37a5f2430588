"""Events from every node, from the central database: the node API's filters, paging and shapes."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from camfleet.fleetstore.events import get_event, page_events
from camfleet.fleetstore.flags import flags_of, reviewed_filter, set_retained, set_reviewed

from ..auth import authorize
from ..routers.common import EventId
from ..routers.events import Epoch, Name
from ..schemas import RetainBody, ReviewedBody
from .context import Fleet, FleetContext
from .media import _503, proxy_of
from .retain import RetainRelay
from .schemas import FleetEvent, FleetEventPage, fleet_event

log = logging.getLogger("camfleet.api.fleet")

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

    ``node`` keeps one node's events; ``reviewed`` and ``retained`` are the marks users set
    through any coordinator (kept in the fleet database).
    """
    where = None if reviewed is None else reviewed_filter(reviewed)

    def page() -> tuple[list[FleetEvent], int]:
        rows, total = page_events(ctx.store.engine, camera=camera, label=label, zone=zone, node=node,
                                  after=after, before=before, min_score=min_score, limit=limit, offset=offset,
                                  where=where)
        return _flagged(ctx, rows), total

    items, total = await asyncio.to_thread(page)
    return FleetEventPage(items=items, total=total, limit=limit, offset=offset)


def _flagged(ctx: FleetContext, rows: list[dict[str, Any]]) -> list[FleetEvent]:
    """The API models of event rows with the users' marks (blocking: reads the flags)."""
    marks = flags_of(ctx.store.engine, [r["id"] for r in rows])
    out = []
    for row in rows:
        event = fleet_event(row)
        mark = marks.get(event.id)
        if mark is not None:
            event.reviewed, event.retain_pending = mark.reviewed, mark.retain_pending
            if mark.retained is not None:
                event.retained = mark.retained
        out.append(event)
    return out


async def _event(ctx: FleetContext, event_id: str) -> FleetEvent:
    def one() -> FleetEvent | None:
        row = get_event(ctx.store.engine, event_id)
        return None if row is None else _flagged(ctx, [row])[0]

    found = await asyncio.to_thread(one)
    if found is None:
        raise HTTPException(404, "no such event")
    return found


@router.get("/{event_id}", response_model=FleetEvent, responses={404: {"description": "no such event"}})
async def one_event(event_id: EventId, ctx: Fleet) -> FleetEvent:
    """One event, with the node that sent it."""
    return await _event(ctx, event_id)


@router.get("/{event_id}/snapshot.jpg", response_class=StreamingResponse,
            responses={200: {"content": {"image/jpeg": {}}, "description": "the image"},
                       404: {"description": "no such event or snapshot"}, **_503})
async def snapshot(event_id: EventId, request: Request, ctx: Fleet) -> StreamingResponse:
    """The event's best frame (JPEG), streamed from the node that made it."""
    return await _from_event_node(request, ctx, event_id, "snapshot.jpg")


@router.get("/{event_id}/clip.mp4", response_class=StreamingResponse,
            responses={200: {"content": {"video/mp4": {}},
                             "description": "the clip (Range requests honoured)"},
                       404: {"description": "no such event or no recording of it"}, **_503})
async def clip(event_id: EventId, request: Request, ctx: Fleet) -> StreamingResponse:
    """The event's clip, cut from its node's recordings and streamed from there (Range honoured)."""
    return await _from_event_node(request, ctx, event_id, "clip.mp4")


async def _from_event_node(request: Request, ctx: Fleet, event_id: str, what: str) -> StreamingResponse:
    node = (await _event(ctx, event_id)).node
    return await proxy_of(request).forward(request, node, f"/api/events/{quote(event_id, safe='')}/{what}")


@router.post("/reviewed", response_model=dict[str, int])
async def mark_reviewed(body: ReviewedBody, ctx: Fleet) -> dict[str, int]:
    """Mark the events ``ids`` reviewed (or not again) fleet-wide; ``{"updated": n}`` of those that exist."""
    return {"updated": await asyncio.to_thread(set_reviewed, ctx.store.engine, body.ids, body.reviewed)}


@router.put("/{event_id}/reviewed", response_model=FleetEvent,
            responses={404: {"description": "no such event"}})
async def set_event_reviewed(event_id: EventId, body: ReviewedBody, ctx: Fleet) -> FleetEvent:
    """Mark the event reviewed (``{"reviewed": true}``) or not, for every coordinator."""
    if not await asyncio.to_thread(set_reviewed, ctx.store.engine, [event_id], body.reviewed):
        raise HTTPException(404, "no such event")
    return await _event(ctx, event_id)


@router.put("/{event_id}/retain", response_model=FleetEvent,
            responses={404: {"description": "no such event"},
                       200: {"description": "the event; ``retain_pending`` true (and the header "
                                            "``X-Camfleet-Pending`` saying why) while its node is "
                                            "not told yet"}})
async def retain(event_id: EventId, body: RetainBody, request: Request, response: Response,
                 ctx: Fleet) -> FleetEvent:
    """Keep the event (and its recording) past retention, or release it.

    The flag is kept in the fleet database and sent to the node that holds the media
    (later, when that node cannot be reached now: ``retain_pending``).
    """
    node = (await _event(ctx, event_id)).node
    await asyncio.to_thread(set_retained, ctx.store.engine, event_id, node, body.retained, pending=True)
    why = await relay_of(request).tell(node, event_id, body.retained)
    if why is not None:
        log.info("retain of %s pending: %s", event_id, why)
        response.headers["X-Camfleet-Pending"] = f"the node will be told when it answers: {why}"[:300]
    return await _event(ctx, event_id)


def relay_of(request: Request) -> RetainRelay:
    """The app's :class:`RetainRelay`."""
    relay: RetainRelay = request.app.state.retain_relay
    return relay
