"""Admitting a WebSocket client: refusing it with an HTTP status, or taking its token's slot."""

from __future__ import annotations

import contextlib

from fastapi import WebSocket
from fastapi.responses import JSONResponse

from .auth import Principal
from .context import ApiContext
from .limits import TooMany


async def deny(ws: WebSocket, status: int, detail: str) -> None:
    """Refuse ``ws`` before accepting it, saying ``detail``.

    An HTTP ``status`` answer where the server can send one (401 with ``WWW-Authenticate:
    Bearer``), else a close with code 1008.
    """
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        await ws.send_denial_response(JSONResponse({"detail": detail}, status, headers=headers))
    else:
        await ws.close(code=1008, reason=detail)


async def accept_with_slot(ws: WebSocket, ctx: ApiContext, principal: Principal) -> bool:
    """Accept ``ws`` and take one of its token's WebSocket slots (``api.max_ws_per_token``).

    False when the token holds all of them: the connection is then closed (1008, saying why).
    The caller releases the slot (``ctx.ws_slots.release(principal.name)``) when it ends.
    """
    await ws.accept()
    try:
        ctx.ws_slots.acquire(principal.name)
    except TooMany:
        with contextlib.suppress(Exception):
            await ws.close(code=1008, reason=f"too many WebSocket connections for this token "
                                             f"(api.max_ws_per_token = {ctx.ws_slots.limit})")
        return False
    return True
