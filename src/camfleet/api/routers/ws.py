"""``/api/ws``: the node's status every second and every event, pushed to the browser."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from ..auth import authorize_ws
from ..context import ws_ctx

log = logging.getLogger("camfleet.api")
router = APIRouter()
SEND_TIMEOUT_S = 5.0


@router.websocket("/api/ws")
async def websocket(ws: WebSocket) -> None:
    """Send ``{"type": "snapshot", "status": ...}`` every second and the node's messages as JSON text.

    The node's messages are ``{"type": "event", ...}`` and ``{"type": "status", ...}`` (a change).

    Authenticate with ``?token=``, the ``Authorization`` header or the cookie;
    any role may connect. A client that falls behind (its queue is full) is
    closed with code 1013; it may reconnect.
    """
    ctx = ws_ctx(ws)
    principal = authorize_ws(ws, ctx)
    if principal is None:
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(JSONResponse({"detail": "a valid token is required"}, 401,
                                                       headers={"WWW-Authenticate": "Bearer"}))
        else:
            await ws.close(code=1008, reason="a valid token is required")
        return
    await ws.accept()
    client = ctx.hub.add()
    # the newest status at once, so a page has something to show
    with contextlib.suppress(Exception):
        client.queue.put_nowait(await asyncio.to_thread(ctx.status.ws_message))

    async def drain_incoming() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while True:
                await ws.receive_text()  # clients send nothing we need; this notices a close

    reader = asyncio.create_task(drain_incoming())
    try:
        while True:
            getter = asyncio.ensure_future(client.queue.get())
            done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break  # the client went away
            text = getter.result()
            if text is None:
                code = 1013 if client.dropped else 1001
                with contextlib.suppress(Exception):
                    await ws.close(code=code, reason="too slow" if client.dropped else "server stopping")
                break
            if client.dropped:
                await ws.close(code=1013, reason="too slow")
                break
            try:
                await asyncio.wait_for(ws.send_text(text), SEND_TIMEOUT_S)
            except TimeoutError:
                ctx.hub.drop(client)  # the socket is not draining
                break
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        ctx.hub.remove(client)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
