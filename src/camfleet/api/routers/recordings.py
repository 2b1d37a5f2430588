"""Recordings: the segments of a camera over a span, a segment file, a clip of any span."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse

from ..auth import authorize
from ..clips import span_clip as export_span
from ..context import Ctx
from ..files import file_response, safe_file
from ..schemas import Segment
from .common import CameraName

router = APIRouter(prefix="/api/recordings", tags=["recordings"], dependencies=[Depends(authorize)])
Epoch = Annotated[float, Query(ge=0, le=1e11, description="epoch seconds")]
_VIDEO = {"content": {"video/mp4": {}}, "description": "the video (Range requests honoured)"}


@router.get("", response_model=list[Segment])
def list_segments(
    ctx: Ctx,
    camera: Annotated[str | None, Query(max_length=128)] = None,
    start: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    end: Annotated[float | None, Query(ge=0, le=1e11)] = None,
) -> list[Segment]:
    """Segments overlapping ``start``..``end`` (epoch seconds), oldest first."""
    return [Segment.of(s) for s in ctx.store.query_segments(camera=camera, start=start, end=end)]


@router.get("/{camera}/clip.mp4", response_class=FileResponse,
            responses={200: _VIDEO, 404: {"description": "no recording covers the span"}})
def span_clip(camera: CameraName, start: Epoch, end: Epoch, ctx: Ctx) -> FileResponse:
    """A clip of ``camera`` from ``start`` to ``end`` (at most an hour), remuxed from its segments."""
    return export_span(ctx, camera, start, end)


@router.get("/files/{path:path}", response_class=FileResponse,
            responses={200: _VIDEO, 404: {"description": "no such segment"}})
def segment_file(path: str, ctx: Ctx) -> FileResponse:
    """One segment file (``path`` as listed), never anything outside the recordings directory."""
    file = safe_file(ctx.recordings_dir, path)
    media = "video/mp4" if file.suffix == ".mp4" else "video/mp2t" if file.suffix == ".ts" else \
        "application/octet-stream"
    return file_response(file, media)
