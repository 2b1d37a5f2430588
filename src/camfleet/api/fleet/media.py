"""Media on the coordinator: snapshots, recordings, clips and live frames stay on the node that made them.

Until the coordinator streams them from the owning node, each such path answers
503 naming that node, so a client knows where to ask.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, HTTPException

from ..auth import authorize
from ..routers.common import CameraName
from .context import Fleet

router = APIRouter(tags=["media"], dependencies=[Depends(authorize)])
_503: dict[int | str, dict[str, Any]] = {
    503: {"description": "served by the camera's node (proxying comes next)"}}


def not_here(node: str | None) -> HTTPException:
    """503: the media lives on ``node`` (None: the camera runs nowhere now)."""
    if node is None:
        return HTTPException(503, "served by the node that runs the camera, and none runs it now; "
                                  "proxying comes next")
    return HTTPException(503, f"served by node {node}; proxying comes next")


async def _camera_node(ctx: Fleet, name: str) -> str | None:
    where = await asyncio.to_thread(ctx.store.assignments)
    known = await asyncio.to_thread(ctx.store.cameras)
    if name not in known and name not in where:
        raise HTTPException(404, "no such camera")
    return where[name][0] if name in where else None


@router.get("/api/cameras/{name}/frame.jpg", responses=_503)
async def frame(name: CameraName, ctx: Fleet) -> None:
    """The live frame comes from the camera's node: 503 naming it."""
    raise not_here(await _camera_node(ctx, name))


@router.get("/api/cameras/{name}/mjpeg", responses=_503)
async def mjpeg(name: CameraName, ctx: Fleet) -> None:
    """The live MJPEG stream comes from the camera's node: 503 naming it."""
    raise not_here(await _camera_node(ctx, name))


@router.get("/api/recordings", responses=_503)
async def recordings() -> None:
    """Recordings are listed by each node: 503."""
    raise HTTPException(503, "recordings are served by each camera's node; proxying comes next")


@router.get("/api/recordings/{camera}/clip.mp4", responses=_503)
async def recording_clip(camera: CameraName, ctx: Fleet) -> None:
    """A clip of the camera's recordings comes from its node: 503 naming it."""
    raise not_here(await _camera_node(ctx, camera))


@router.get("/api/recordings/{camera}/timeline", responses=_503)
async def timeline(camera: CameraName, ctx: Fleet) -> None:
    """The camera's timeline comes from its node: 503 naming it."""
    raise not_here(await _camera_node(ctx, camera))


@router.get("/api/recordings/files/{path:path}", responses=_503)
async def recording_file(path: str) -> None:
    """Segment files live on their node: 503."""
    raise HTTPException(503, "recording files are served by each camera's node; proxying comes next")
