"""``create_app``: the FastAPI application of a node (REST, WebSocket, metrics, web UI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from camfleet import __version__
from camfleet.config import ApiSettings
from camfleet.runtime.control import NodeControl
from camfleet.store import Store

from .access_log import AccessLog
from .context import ApiContext
from .frigate_session import Sessions
from .hosts import HostGuard, HostPolicy
from .hub import Hub
from .limits import BodyLimit
from .live import LiveFrames
from .metrics import registry
from .routers import (
    cameras,
    config,
    docs,
    events,
    frigate_compat,
    live,
    meta,
    metrics,
    recordings,
    system,
    ui,
    ws,
)
from .status_cache import StatusCache

log = logging.getLogger("camfleet.api")

STATUS_PERIOD_S = 1.0


async def _status_ticker(ctx: ApiContext) -> None:
    """Every second: drop stuck WebSocket clients, push a status snapshot (while there are clients)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(STATUS_PERIOD_S)  # the push period, not a synchronisation
        ctx.hub.check_stuck(loop.time())
        if ctx.hub.clients:
            try:
                text = await asyncio.to_thread(ctx.status.ws_message)
            except Exception:
                log.warning("status snapshot failed", exc_info=True)
                continue
            ctx.hub.publish_text(text)
        await asyncio.to_thread(ctx.live.close_idle)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    ctx: ApiContext = app.state.ctx
    ctx.hub.bind(asyncio.get_running_loop())
    unsubscribe = ctx.node.add_listener(ctx.hub.publish_threadsafe)
    ticker = asyncio.create_task(_status_ticker(ctx))
    try:
        yield
    finally:
        unsubscribe()
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        ctx.hub.close_all()
        ctx.meta.close()
        await asyncio.to_thread(ctx.live.close)


def create_app(
    node: NodeControl,
    store: Store,
    config_api: ApiSettings,
    *,
    data_dir: Path,
    recordings_dir: Path,
    status_ttl: float = 0.5,
    max_body_bytes: int = 1 << 20,
    ws_queue: int = 256,
) -> FastAPI:
    """The API and UI of ``node``, reading events, recordings and tokens from ``store``.

    Args:
        node: the running node.
        store: the database.
        config_api: the ``api`` settings (``open`` is honoured only on a loopback host).
        data_dir: where snapshots (``snapshots/<camera>/<id>.jpg``) and exported clips live.
        recordings_dir: where recording segments live.
        status_ttl: seconds a status snapshot is reused.
        max_body_bytes: larger request bodies get 413.
        ws_queue: messages queued per WebSocket client before it is dropped as too slow.
    """
    status = StatusCache(node, status_ttl)
    hub = Hub(ws_queue)
    ctx = ApiContext(node=node, store=store, settings=config_api, data_dir=Path(data_dir),
                     recordings_dir=Path(recordings_dir), status=status, live=LiveFrames(), hub=hub,
                     max_body_bytes=max_body_bytes)
    app = FastAPI(
        title="camfleet", version=__version__, lifespan=_lifespan,
        description="camfleet node: status, cameras, events, recordings, live view.",
        # the schema and Swagger UI are served by routers.docs: behind auth, from local files (no CDN)
        openapi_url=None, docs_url=None, redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.metrics = registry(status, hub)
    app.state.frigate_sessions = Sessions(Path(data_dir), store)
    for module in (system, cameras, events, recordings, live, meta, config, metrics, ws, docs, ui):
        for name in ("public", "router"):
            r: Any = getattr(module, name, None)
            if r is not None:
                app.include_router(r)
    # Frigate's API shapes (compat.frigate): answers 404 while the configuration in force has it off,
    # so a reload turns it on or off without a restart
    app.include_router(frigate_compat.router)
    app.include_router(frigate_compat.reads)
    app.include_router(frigate_compat.ui_links)
    app.mount("/ui", ui.static_files(), name="ui")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(HostGuard, policy=HostPolicy(config_api.allowed_hosts))  # DNS rebinding, CSWSH
    app.add_middleware(AccessLog)
    return app
