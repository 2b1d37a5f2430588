"""Media on the coordinator: snapshots, recordings, clips and live frames, streamed from their node.

They stay on the node that made them; each path here finds that node (the
camera's assignment, or the event's node) and relays the node's own answer
through :class:`~camfleet.api.fleet.proxy.NodeProxy` after the coordinator's
authentication. A node that is down answers 503 "node X unreachable since T".
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse

from ..auth import authorize
from ..routers.common import CameraName
from ..routers.live import BOUNDARY
from ..routers.recordings import DEFAULT_LIMIT, MAX_LIMIT
from ..schemas import Segment, Timeline
from .context import Fleet, FleetContext
from .proxy import NodeProxy

router = APIRouter(tags=["media"], dependencies=[Depends(authorize)])
_503: dict[int | str, dict[str, Any]] = {
    503: {"description": "the camera's node is unreachable (named, with since when), or none runs it"}}
MEDIA_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the node's answer, streamed (Range requests honoured: 206)"}, **_503}


def not_here(node: str | None) -> HTTPException:
    """503 for media whose node is unknown (None: the camera runs nowhere now)."""
    if node is None:
        return HTTPException(503, "no node runs the camera now, so its media cannot be reached")
    return HTTPException(503, f"node {node} holds it and cannot be reached")


def proxy_of(request: Request) -> NodeProxy:
    """The app's :class:`NodeProxy`."""
    proxy: NodeProxy = request.app.state.node_proxy
    return proxy


async def camera_node(ctx: FleetContext, name: str) -> str:
    """The node that runs camera ``name`` (404: no such camera; 503: none runs it now)."""
    where = await asyncio.to_thread(ctx.store.assignments)
    if name in where:
        return where[name][0]
    known = await asyncio.to_thread(ctx.store.cameras)
    if name not in known:
        raise HTTPException(404, "no such camera")
    raise not_here(None)


async def from_camera_node(request: Request, ctx: FleetContext, camera: str, path: str) -> StreamingResponse:
    """Relay ``GET path`` (with the request's query) from ``camera``'s node."""
    return await proxy_of(request).forward(request, await camera_node(ctx, camera), path)


def _seg(text: str) -> str:
    return quote(text, safe="")


_JPEG: dict[str, Any] = {"content": {"image/jpeg": {}}}
_VIDEO: dict[str, Any] = {"content": {"video/mp4": {}}, "description": "the video (Range requests honoured)"}
_NO_CAMERA: dict[int | str, dict[str, Any]] = {404: {"description": "no such camera"}}
Epoch = Annotated[float, Query(ge=0, le=1e11, description="epoch seconds")]
# the node's parameters, checked here too; the node gets the query as sent


@router.get("/api/cameras/{name}/frame.jpg", response_class=StreamingResponse,
            responses={200: _JPEG, **_NO_CAMERA, **_503})
async def frame(name: CameraName, request: Request, ctx: Fleet,
                after: Annotated[int, Query(ge=0, le=2**63 - 1,
                                            description="wait for a frame newer than this X-Frame-Seq")] = 0,
                ) -> StreamingResponse:
    """The camera's newest frame as JPEG, from its node (as on a node: ``after`` waits for a newer one)."""
    return await from_camera_node(request, ctx, name, f"/api/cameras/{_seg(name)}/frame.jpg")


@router.get("/api/cameras/{name}/mjpeg", response_class=StreamingResponse,
            responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}},
                       **_NO_CAMERA, **_503})
async def mjpeg(name: CameraName, request: Request, ctx: Fleet,
                fps: Annotated[float, Query(gt=0, le=15)] = 5.0) -> StreamingResponse:
    """The camera's MJPEG stream from its node, relayed until the client (or the node) goes away."""
    return await from_camera_node(request, ctx, name, f"/api/cameras/{_seg(name)}/mjpeg")


@router.get("/api/recordings", response_model=list[Segment], responses=_503)
async def recordings(
    request: Request, ctx: Fleet,
    camera: Annotated[str, Query(max_length=128, description="required on the coordinator: each node "
                                 "lists its own cameras' recordings")],
    start: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    end: Annotated[float | None, Query(ge=0, le=1e11)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="segments per page")] = DEFAULT_LIMIT,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000, description="segments to skip")] = 0,
) -> Any:
    """A camera's segments, listed by the node that runs it (``camera`` is required on the coordinator).

    Paged as on a node (``Link: rel="next"``).
    """
    return await from_camera_node(request, ctx, camera, "/api/recordings")


@router.get("/api/recordings/{camera}/clip.mp4", response_class=StreamingResponse,
            responses={200: _VIDEO, 404: {"description": "no recording covers the span"},
                       429: {"description": "this token already runs its share of exports"},
                       507: {"description": "the disk is at its storage floor"}, **_503})
async def recording_clip(camera: CameraName, start: Epoch, end: Epoch, request: Request,
                         ctx: Fleet) -> StreamingResponse:
    """A clip of the camera's recordings from ``start`` to ``end``, cut and streamed by its node."""
    return await from_camera_node(request, ctx, camera, f"/api/recordings/{_seg(camera)}/clip.mp4")


@router.get("/api/recordings/{camera}/timeline", response_model=Timeline,
            responses={422: {"description": "end before start, or a span over 7 days"}, **_503})
async def timeline(camera: CameraName, start: Epoch, end: Epoch, request: Request, ctx: Fleet) -> Any:
    """The camera's timeline from ``start`` to ``end``, from its node."""
    return await from_camera_node(request, ctx, camera, f"/api/recordings/{_seg(camera)}/timeline")


@router.get("/api/recordings/files/{path:path}", response_class=StreamingResponse,
            responses={200: _VIDEO, 404: {"description": "no such segment"}, **_503})
async def recording_file(path: str, request: Request, ctx: Fleet) -> StreamingResponse:
    """A segment file (``path`` as listed, ``<camera>/...``), from the node that runs that camera."""
    camera = path.split("/", 1)[0]
    if len(path) > 1024 or "/" not in path or not camera:
        raise HTTPException(404, "not found")
    return await from_camera_node(request, ctx, camera,
                                  "/api/recordings/files/" + quote(path, safe="/"))
