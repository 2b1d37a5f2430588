"""``/api/cameras/{name}/meta`` on the coordinator: the live detections of a camera, from its node.

The client authenticates to the coordinator as to a node (any role); the coordinator
opens the same WebSocket on the node that runs the camera (its agent API, signed
with the fleet's key) and relays each text message as it comes. When that node
cannot be reached, or goes away while the client watches (a lost connection, or
no answer to a ping within ``PING_S``), the client's socket is closed with code
1013 (try again later) and a reason naming the node ("node n2 unreachable since
..."), never left hanging; when the node itself ends the feed (the camera stopped
or moved), the reason says so and the client may open it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from typing import cast
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.frames import Close

from camfleet.config.model import CAMERA_NAME_PATTERN

from ..auth import authorize_ws
from ..context import ApiContext
from ..ws_access import accept_with_slot, deny
from .context import FleetContext
from .proxy import NodeProxy

log = logging.getLogger("camfleet.api.fleet")

router = APIRouter()
_NAME = re.compile(CAMERA_NAME_PATTERN)
TRY_AGAIN = 1013
"""Close code when the camera's node cannot be reached or went away (RFC 6455: try again later)."""
OPEN_S = 3.0
"""How long opening the node's WebSocket may take (seconds; the TCP connection: ``CONNECT_S``)."""
PING_S = 5.0
"""The node's socket is pinged this often, and dropped when a pong takes longer (seconds): a hung node."""
MAX_MESSAGE = 1 << 20
"""Largest message accepted from a node (bytes)."""


def _reason(text: str) -> str:
    """A close reason within the 123 bytes a close frame holds."""
    raw = text.encode()
    return text if len(raw) <= 123 else raw[:120].decode(errors="ignore") + "..."


async def _open(proxy: NodeProxy, node: str, name: str) -> ClientConnection:
    """The node's ``/meta`` WebSocket of camera ``name`` (HTTPException 503/502 naming the node)."""
    url, headers = await proxy.websocket_target(node, f"/api/cameras/{quote(name, safe='')}/meta")
    try:
        async with asyncio.timeout(OPEN_S):
            return await connect(url, additional_headers=headers, max_size=MAX_MESSAGE, open_timeout=None,
                                 ping_interval=PING_S, ping_timeout=PING_S, proxy=None)
    except InvalidStatus as exc:
        status = exc.response.status_code
        if status == 404:
            raise HTTPException(404, f"node {node} does not run camera {name} (now)") from None
        raise HTTPException(502, f"node {node} refused the live detections ({status})") from None
    except TimeoutError:
        raise proxy.unreachable(node, f"no connection within {OPEN_S:g} s") from None
    except (OSError, InvalidHandshake) as exc:
        raise proxy.unreachable(node, type(exc).__name__) from None


@router.websocket("/api/cameras/{name}/meta")
async def camera_meta(ws: WebSocket, name: str) -> None:
    """Push one JSON text message per analysed frame of camera ``name``, relayed from its node.

    The messages are the node's (see the node API). Authenticate as for ``/api/ws``; 404 for
    an unknown or disabled camera. When the camera's node cannot be reached or goes away,
    the socket closes with code 1013 and a reason naming the node.
    """
    ctx: FleetContext = ws.app.state.ctx
    principal = authorize_ws(ws, cast(ApiContext, ctx))  # FleetContext offers what authorize_ws reads
    if principal is None:
        await deny(ws, 401, "a valid token is required")
        return
    cam = (await asyncio.to_thread(ctx.store.cameras)).get(name) if _NAME.fullmatch(name) else None
    if cam is None or cam.settings.get("enabled") is False:
        await deny(ws, 404, "no such camera (or it is disabled)")
        return
    if not await accept_with_slot(ws, cast(ApiContext, ctx), principal):
        return
    try:
        await _relay(ws, ctx, name)
    finally:
        ctx.ws_slots.release(principal.name)


async def _relay(ws: WebSocket, ctx: FleetContext, name: str) -> None:
    where = await asyncio.to_thread(ctx.store.assignments)
    if name not in where:
        await _close(ws, TRY_AGAIN, "no node runs the camera now")
        return
    node = where[name][0]
    proxy: NodeProxy = ws.app.state.node_proxy
    try:
        upstream = await _open(proxy, node, name)
    except HTTPException as exc:
        await _close(ws, TRY_AGAIN if exc.status_code >= 500 else 1008, str(exc.detail))
        return

    async def client_side() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await ws.receive_text()  # clients send nothing; this notices a close

    async def node_side() -> None:
        async for message in upstream:
            await ws.send_text(message if isinstance(message, str) else message.decode(errors="replace"))

    reader = asyncio.create_task(client_side())
    relay = asyncio.create_task(node_side())
    done: set[asyncio.Task[None]] = set()
    frame: Close | None = None
    try:
        done, _ = await asyncio.wait({reader, relay}, return_when=asyncio.FIRST_COMPLETED)
        frame = upstream.protocol.close_rcvd  # before our own close below: what the node said, if anything
    finally:
        for task in (reader, relay):
            task.cancel()
        for task in (reader, relay):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(upstream.close(), 2.0)
    if relay not in done or reader in done:
        return  # the client left (or the server stops): nothing to tell it
    if not relay.cancelled():
        failure = relay.exception()
        if frame is not None and (failure is None or isinstance(failure, ConnectionClosed)):
            # the node closed it (the camera stopped or moved there): the client may open it again
            said = f": {frame.reason}" if frame.reason else ""
            await _close(ws, TRY_AGAIN, f"node {node} ended the live detections ({frame.code}{said})")
        elif failure is None or isinstance(failure, ConnectionClosed):
            why = proxy.unreachable(node, "the connection was lost").detail
            await _close(ws, TRY_AGAIN, str(why))
        else:
            log.warning("meta relay of %s from %s failed: %s", name, node, type(failure).__name__)
            await _close(ws, TRY_AGAIN, f"node {node}: the live detections failed")


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code=code, reason=_reason(reason)), 2.0)

