"""An access log that never writes query strings (they may carry a token)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("camfleet.api.access")


class AccessLog:
    """Logs ``client METHOD /path status ms`` per request and WebSocket, never the query string.

    Errors (4xx, 5xx) at INFO, the rest at DEBUG (a live view polls every second).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on and log it when its response starts."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "websocket.accept":
                status = 101
            elif message["type"] == "websocket.close" and status == 0:
                status = 403
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            level = logging.INFO if status >= 400 or status == 0 else logging.DEBUG
            if log.isEnabledFor(level):
                client = scope.get("client") or ("-", 0)
                method = scope.get("method", "WS")
                log.log(level, "%s %s %s %d %.1fms", client[0], method, scope.get("path", ""), status,
                        (time.perf_counter() - started) * 1000)
