"""Recordings: the segments of a camera over a span (paged), a segment file, a clip of any span."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from ..auth import Principal, authorize
from ..clips import span_clip as export_span
from ..context import Ctx
from ..files import file_response, safe_file
from ..schemas import Segment, Timeline
from .common import CameraName

router = APIRouter(prefix="/api/recordings", tags=["recordings"], dependencies=[Depends(authorize)])
Epoch = Annotated[float, Query(ge=0, le=1e11, description="epoch seconds")]
_VIDEO = {"content": {"video/mp4": {}}, "description": "the video (Range requests honoured)"}
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000


@router.get("", response_model=list[Segment])
def list_segments(
    ctx: Ctx,
    request: Request,
    response: Response,
    camera: Annotated[str | None, Query(max_length=128)] = None,
    start: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    end: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="segments per page")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="segments to skip")] = 0,
) -> list[Segment]:
    """Segments overlapping ``start``..``end`` (epoch seconds), by camera then start, one page at a time.

    At most ``limit`` segments; when more follow, a ``Link: <...>; rel="next"``
    header gives the next page's URL.
    """
    rows = ctx.store.segments_page(camera=camera, start=start, end=end, limit=limit + 1, offset=offset)
    if len(rows) > limit:  # one more than asked for: there is a next page
        rows = rows[:limit]
        nxt = request.url.include_query_params(limit=limit, offset=offset + limit)
        response.headers["Link"] = f'<{nxt.path}?{nxt.query}>; rel="next"'
    return [Segment.of(s) for s in rows]


@router.get("/{camera}/clip.mp4", response_class=FileResponse,
            responses={200: _VIDEO, 404: {"description": "no recording covers the span"},
                       429: {"description": "this token already runs its share of exports"},
                       507: {"description": "the disk is at its storage floor"}})
def span_clip(camera: CameraName, start: Epoch, end: Epoch, ctx: Ctx,
              principal: Annotated[Principal, Depends(authorize)]) -> FileResponse:
    """A clip of ``camera`` from ``start`` to ``end`` (at most an hour), widened to whole segments.

    ``X-Clip-Start``/``X-Clip-End`` give the span the clip covers (epoch seconds).
    """
    return export_span(ctx, principal.name, camera, start, end)


@router.get("/files/{path:path}", response_class=FileResponse,
            responses={200: _VIDEO, 404: {"description": "no such segment"}})
def segment_file(path: str, ctx: Ctx) -> FileResponse:
    """One segment file (``path`` as listed): only files indexed as segments, inside the recordings folder."""
    if len(path) > 1024 or not ctx.store.segment_indexed(path):
        raise HTTPException(404, "not found")  # the same answer as a missing file: nothing to probe
    file = safe_file(ctx.recordings_dir, path)
    media = "video/mp4" if file.suffix == ".mp4" else "video/mp2t" if file.suffix == ".ts" else \
        "application/octet-stream"
    return file_response(file, media)


TIMELINE_MAX_S = 7 * 86400
TIMELINE_MAX_EVENTS = 5000
GAP_S = 1.0  # segments closer than this make one recorded span (cut points, clock jitter)


@router.get("/{camera}/timeline", response_model=Timeline,
            responses={422: {"description": "end before start, or a span over 7 days"}})
def timeline(camera: CameraName, start: Epoch, end: Epoch, ctx: Ctx) -> JSONResponse:
    """What ``camera`` has from ``start`` to ``end`` (at most 7 days): recorded spans, motion, events.

    ``recorded``: ``[start, end]`` pairs of contiguous segments (gaps are what lies
    between); ``motion``: ``[start, end]`` of motion activity; ``events``: the
    events starting in the span, oldest first (at most 5000; ``events_truncated``
    says when there were more). Times in epoch seconds. Play a point with
    ``GET /api/recordings?camera=&start=&end=`` and the segment files.
    """
    if end <= start or end - start > TIMELINE_MAX_S:
        raise HTTPException(422, "end must be after start, by at most 7 days")
    recorded: list[list[float]] = []
    offset = 0
    while True:  # pages keep each query bounded; a day of 2 s segments is ~43 000 rows
        rows = ctx.store.segments_page(camera=camera, start=start, end=end, limit=MAX_LIMIT, offset=offset)
        for s in rows:
            if recorded and s.start - recorded[-1][1] <= GAP_S:
                recorded[-1][1] = max(recorded[-1][1], s.end)
            else:
                recorded.append([s.start, s.end])
        if len(rows) < MAX_LIMIT:
            break
        offset += MAX_LIMIT
    motion = [[a.start, a.end] for a in ctx.store.query_activity(camera, start, end) if a.kind == "motion"]
    records = ctx.store.query_events(camera=camera, after=start, before=end, limit=TIMELINE_MAX_EVENTS + 1)
    events = [{"id": r.id, "label": r.label, "start": r.start, "end": r.end, "top_score": r.top_score,
               "zones": list(r.zones)} for r in reversed(records[:TIMELINE_MAX_EVENTS])]
    # thousands of events: built as the documented Timeline shape, sent without validating each again
    return JSONResponse({"camera": camera, "start": start, "end": end, "recorded": recorded, "motion": motion,
                         "events": events, "events_truncated": len(records) > TIMELINE_MAX_EVENTS})
