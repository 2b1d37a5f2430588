"""``/api/ws``: the node's status every second and every event, pushed to the browser."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ..auth import authorize_ws
from ..context import ApiContext, ws_ctx
from ..ws_access import accept_with_slot, deny

log = logging.getLogger("camfleet.api")
router = APIRouter()
CLOSE_TIMEOUT_S = 2.0


@router.websocket("/api/ws")
async def websocket(ws: WebSocket) -> None:
    """Send ``{"type": "snapshot", "status": ...}`` every second and the node's messages as JSON text.

    The node's messages are ``{"type": "event", "event_type": "start"|"update"|"end", "event": Event}``
    (``Event``: the REST API's event shape, times in epoch seconds) and ``{"type": "status", ...}``
    (a change).

    Authenticate with ``?token=``, the ``Authorization`` header or the cookie;
    any role may connect. A client that falls behind (its queue is full) is
    closed with code 1013; it may reconnect.
    """
    ctx = ws_ctx(ws)
    principal = authorize_ws(ws, ctx)
    if principal is None:
        await deny(ws, 401, "a valid token is required")
        return
    # per-token cap (issue 12): one token cannot hold every connection and queue of the server
    if not await accept_with_slot(ws, ctx, principal):
        return
    try:
        await _serve(ws, ctx)
    finally:
        ctx.ws_slots.release(principal.name)


async def _serve(ws: WebSocket, ctx: ApiContext) -> None:
    """Push to an accepted client until it leaves, falls behind or the server stops."""
    client = ctx.hub.add()
    # the newest status at once, so a page has something to show
    with contextlib.suppress(Exception):
        client.queue.put_nowait(await asyncio.to_thread(ctx.status.ws_message))

    async def drain_incoming() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await ws.receive_text()  # clients send nothing we need; this notices a close

    async def send_loop() -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while (text := await client.queue.get()) is not None and not client.dropped:
                client.sending_since = loop.time()  # the hub's watchdog drops a send stuck this long
                await ws.send_text(text)
                client.sending_since = None

    reader = asyncio.create_task(drain_incoming())
    sender = asyncio.create_task(send_loop())
    client.task = sender
    try:
        await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        ctx.hub.remove(client)
        for task in (reader, sender):
            task.cancel()
        for task in (reader, sender):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if not reader.done():  # still connected: dropped as too slow, or the server is stopping
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(code=1013 if client.dropped else 1001,
                                                reason="too slow" if client.dropped else "server stopping"),
                                       CLOSE_TIMEOUT_S)
