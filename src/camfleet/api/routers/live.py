"""Live view: a camera's newest frame as JPEG, and an MJPEG stream of them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from ..auth import authorize
from ..context import ApiContext, Ctx
from ..live import NoFrame
from .common import CameraName

router = APIRouter(prefix="/api/cameras", tags=["live"], dependencies=[Depends(authorize)])
BOUNDARY = "camfleetframe"
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such camera"}, 503: {"description": "no frame yet"},
}


def _known(ctx: ApiContext, camera: str) -> None:
    cam = ctx.node.current_config().cameras.get(camera)
    if cam is None or not cam.enabled:
        raise HTTPException(404, "no such camera (or it is disabled)")


@router.get("/{name}/frame.jpg", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}}, **_NOT_FOUND})
async def frame_jpg(
    name: CameraName, ctx: Ctx,
    after: Annotated[int, Query(ge=0, le=2**63 - 1,
                                description="wait for a frame newer than this X-Frame-Seq")] = 0,
) -> Response:
    """The camera's newest frame as JPEG (404: unknown camera; 503: no frame yet, retry).

    ``X-Frame-Seq`` is the frame's sequence number in the camera's frame ring (the
    overlay's metadata carries the same number); ``after`` waits up to 2 s for a newer one.
    """
    _known(ctx, name)
    try:
        jpeg, seq = await ctx.live.jpeg_async(name, 2.0, after)
    except NoFrame as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Cache-Control": "no-store", "X-Frame-Seq": str(seq)})


async def _mjpeg(request: Request, ctx: ApiContext, name: str, fps: float) -> AsyncIterator[bytes]:
    period = 1.0 / fps
    loop = asyncio.get_running_loop()
    seq = 0
    while not await request.is_disconnected():
        started = loop.time()
        try:
            jpeg, seq = await ctx.live.jpeg_async(name, 2.0, seq)
        except NoFrame:
            if ctx.live.closed:
                return
            await asyncio.sleep(0.5)  # rate limit while the camera has no frame
            continue
        yield (f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
               .encode() + jpeg + b"\r\n")
        await asyncio.sleep(max(period - (loop.time() - started), 0.0))  # the stream's rate limit


@router.get("/{name}/mjpeg", response_class=StreamingResponse,
            responses={200: {"content": {f"multipart/x-mixed-replace; boundary={BOUNDARY}": {}}},
                       404: {"description": "no such camera"}})
async def mjpeg(
    name: CameraName, request: Request, ctx: Ctx,
    fps: Annotated[float, Query(gt=0, le=15)] = 5.0,
) -> StreamingResponse:
    """The camera's frames as a multipart MJPEG stream at most ``fps`` frames/s, until the client leaves."""
    _known(ctx, name)
    return StreamingResponse(_mjpeg(request, ctx, name, fps),
                             media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                             headers={"Cache-Control": "no-store"})
