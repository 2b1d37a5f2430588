"""``create_fleet_app``: the coordinator's API, with a node's paths and shapes for the whole fleet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from camfleet import __version__
from camfleet.cluster.connection import NatsOptions
from camfleet.config import ApiSettings, Config
from camfleet.fleetstore.store import FleetStore
from camfleet.redact import mask_text
from camfleet.store.errors import StoreError

from ..access_log import AccessLog
from ..hosts import HostGuard, HostPolicy
from ..hub import Hub
from ..limits import BodyLimit
from ..metrics import registry
from ..routers import docs, metrics, ui, ws
from ..status_cache import StatusCache
from . import media, routes_cameras, routes_events, routes_fleet
from .context import FleetContext
from .link import FleetLink
from .proxy import NodeProxy
from .status import FleetStatusSource

log = logging.getLogger("camfleet.api.fleet")

STATUS_PERIOD_S = 1.0


async def _status_ticker(ctx: FleetContext) -> None:
    """Every second: drop stuck WebSocket clients, push the fleet's status (while there are clients)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(STATUS_PERIOD_S)  # the push period, not a synchronisation
        ctx.hub.check_stuck(loop.time())
        if ctx.hub.clients:
            try:
                text = await asyncio.to_thread(ctx.status.ws_message)
            except Exception:
                log.warning("fleet status snapshot failed", exc_info=True)
                continue
            ctx.hub.publish_text(text)


async def _database_down(request: Request, exc: Exception) -> JSONResponse:
    """503 for a fleet database that fails (StoreError messages never hold its password)."""
    why = mask_text(str(exc)) if isinstance(exc, StoreError) else f"failed ({type(exc).__name__})"
    detail = f"the fleet database is unavailable: {why}"
    log.warning("%s %s: %s", request.method, request.url.path, detail)
    return JSONResponse({"detail": detail}, status_code=503)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx: FleetContext = app.state.ctx
    ctx.hub.bind(asyncio.get_running_loop())

    def on_message(message: dict[str, Any]) -> None:
        ctx.hub.publish_text(json.dumps(message, separators=(",", ":"), default=str))

    ctx.link.on_message = on_message
    await ctx.link.start()
    ticker = asyncio.create_task(_status_ticker(ctx))
    app.state.node_proxy = NodeProxy(ctx.link)
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        ctx.hub.close_all()
        await app.state.node_proxy.close()
        await ctx.link.close()


def create_fleet_app(
    store: FleetStore,
    options: NatsOptions,
    config_api: ApiSettings,
    *,
    coordinator_id: str,
    status_ttl: float = 0.5,
    max_body_bytes: int = 1 << 20,
    ws_queue: int = 256,
    base: Config | None = None,
) -> FastAPI:
    """The coordinator's API: the node API's cameras, status, events, ``/metrics`` and ``/api/ws`` fleet-wide.

    Args:
        store: the fleet database (cameras, assignments, events, tokens).
        options: how to reach the fleet's NATS (control requests, node statuses, live events).
        config_api: the ``api`` settings (``open`` is honoured only on a loopback host).
        coordinator_id: this coordinator's id (shown as the status's ``node``).
        status_ttl: seconds a status snapshot is reused.
        max_body_bytes: larger request bodies get 413.
        ws_queue: messages queued per WebSocket client before it is dropped as too slow.
        base: the coordinators' base configuration (``/api/config``; None: camfleet's embedded default).
    """
    link = FleetLink(options)
    status = StatusCache(FleetStatusSource(store, link, coordinator_id), status_ttl)
    hub = Hub(ws_queue)
    ctx = FleetContext(store=store, link=link, settings=config_api, status=status, hub=hub,
                       coordinator_id=coordinator_id, max_body_bytes=max_body_bytes, base=base)
    app = FastAPI(title="camfleet coordinator", version=__version__, lifespan=_lifespan,
                  description="camfleet fleet: the node API for every camera of every node, and the fleet.",
                  # the schema and Swagger UI: routers.docs, behind auth, from local files (as on a node)
                  docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.state.metrics = registry(status, hub)
    for r in (routes_fleet.public, routes_fleet.router, routes_fleet.fleet, routes_cameras.router,
              media.router, routes_events.router, metrics.router, ws.router, docs.router, docs.public,
              ui.router):
        app.include_router(r)
    app.mount("/ui", ui.static_files(), name="ui")  # the node's UI; it finds /api/fleet: fleet pages
    app.add_exception_handler(StoreError, _database_down)
    app.add_exception_handler(SQLAlchemyError, _database_down)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(HostGuard, policy=HostPolicy(config_api.allowed_hosts))  # DNS rebinding, CSWSH
    app.add_middleware(AccessLog)
    return app
