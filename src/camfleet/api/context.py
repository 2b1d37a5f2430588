"""What every request handler needs: the node, the store, the settings and the shared helpers."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, WebSocket

from camfleet.config import ApiSettings
from camfleet.runtime.control import NodeControl

from .limits import PerKeyLimit
from .meta import MetaFeeds

if TYPE_CHECKING:
    from camfleet.store import Store

    from .hub import Hub
    from .live import LiveFrames
    from .status_cache import StatusCache

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass
class ApiContext:
    """The state one API instance shares between its handlers (kept in ``app.state.ctx``)."""

    node: NodeControl
    store: Store
    settings: ApiSettings
    data_dir: Path
    recordings_dir: Path
    status: StatusCache
    live: LiveFrames
    hub: Hub
    max_body_bytes: int = 1 << 20
    meta: MetaFeeds = field(default_factory=MetaFeeds)  # the live overlay's per-camera feeds
    clips_dir: Path = field(init=False)
    apply_lock: threading.Lock = field(default_factory=threading.Lock)
    export_slots: PerKeyLimit = field(init=False)  # clip exports running, per token name
    ws_slots: PerKeyLimit = field(init=False)  # WebSocket connections open, per token name

    def __post_init__(self) -> None:
        self.clips_dir = self.data_dir / "clips"
        self.export_slots = PerKeyLimit(self.settings.max_exports_per_token)
        self.ws_slots = PerKeyLimit(self.settings.max_ws_per_token)

    @property
    def open(self) -> bool:
        """Requests need no token: ``api.open`` and a loopback host (checked again per client)."""
        return self.settings.open and self.settings.host in LOOPBACK_HOSTS

    @property
    def snapshots_dir(self) -> Path:
        """Where the pipeline writes event snapshots."""
        return self.data_dir / "snapshots"


def get_ctx(request: Request) -> ApiContext:
    """The :class:`ApiContext` of the app serving ``request`` (a FastAPI dependency)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


def ws_ctx(websocket: WebSocket) -> ApiContext:
    """The :class:`ApiContext` of the app serving ``websocket``."""
    ctx: ApiContext = websocket.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]
"""A handler parameter that receives the :class:`ApiContext`."""
