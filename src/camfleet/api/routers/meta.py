"""``/api/cameras/{name}/meta``: what the pipeline saw in each analysed frame, for the live overlay."""

from __future__ import annotations

import asyncio
import contextlib
import re

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from camfleet.config.model import CAMERA_NAME_PATTERN

from ..auth import authorize_ws
from ..context import ws_ctx
from ..ws_access import accept_with_slot, deny

router = APIRouter()
_NAME = re.compile(CAMERA_NAME_PATTERN)


@router.websocket("/api/cameras/{name}/meta")
async def camera_meta(ws: WebSocket, name: str) -> None:
    """Push one JSON text message per analysed frame of camera ``name``.

    A message: ``{"seq", "pts", "t", "w", "h", "objects": [{"id", "label", "score", "box",
    "stationary", "zones"}], "motion": [box, ...]}``; boxes are ``[x0, y0, x1, y1]``
    normalised to 0..1 of the frame; ``seq`` is the frame's sequence number in the
    camera's frame ring (``X-Frame-Seq`` of ``frame.jpg``), ``t`` its capture time
    (epoch seconds). A slow client misses records, never slows anyone.

    Authenticate as for ``/api/ws`` (any role); 404 for an unknown or disabled camera.
    """
    ctx = ws_ctx(ws)
    principal = authorize_ws(ws, ctx)
    if principal is None:
        await deny(ws, 401, "a valid token is required")
        return
    cam = ctx.node.current_config().cameras.get(name) if _NAME.fullmatch(name) else None
    if cam is None or not cam.enabled:
        await deny(ws, 404, "no such camera (or it is disabled)")
        return
    if not await accept_with_slot(ws, ctx, principal):
        return
    client = ctx.meta.add(name, asyncio.get_running_loop())

    async def drain_incoming() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await ws.receive_text()  # clients send nothing; this notices a close

    async def send_loop() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while (text := await client.queue.get()) is not None:
                await ws.send_text(text)

    reader = asyncio.create_task(drain_incoming())
    sender = asyncio.create_task(send_loop())
    try:
        await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ctx.meta.remove(name, client)
        ctx.ws_slots.release(principal.name)
        for task in (reader, sender):
            task.cancel()
        for task in (reader, sender):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not reader.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1001), 2.0)
