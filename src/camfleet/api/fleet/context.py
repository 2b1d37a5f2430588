"""What the coordinator API's handlers share (kept in ``app.state.ctx``).

It offers what the node's shared parts read from :class:`~camfleet.api.context.ApiContext`
(``open``, ``store.verify_token``, ``store.ping``, ``status``, ``hub``, ``ws_slots``), so
the node's authentication, WebSocket and ``/metrics`` routers serve the fleet unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from camfleet.cluster.control import ControlError
from camfleet.config import ApiSettings, Config
from camfleet.fleetstore.store import FleetStore

from ..context import LOOPBACK_HOSTS
from ..hub import Hub
from ..limits import PerKeyLimit
from ..status_cache import StatusCache
from .link import FleetLink


@dataclass
class FleetContext:
    """The coordinator API's state: the fleet database, the NATS link, the status cache, the hub."""

    store: FleetStore
    link: FleetLink
    settings: ApiSettings
    status: StatusCache
    hub: Hub
    coordinator_id: str
    max_body_bytes: int = 1 << 20
    base: Config | None = None
    """The coordinators' base configuration (``--base-config``; None: camfleet's embedded default)."""
    ws_slots: PerKeyLimit = field(init=False)

    def __post_init__(self) -> None:
        self.ws_slots = PerKeyLimit(self.settings.max_ws_per_token)

    @property
    def open(self) -> bool:
        """Requests need no token: ``api.open`` and a loopback host (checked again per client)."""
        return self.settings.open and self.settings.host in LOOPBACK_HOSTS

    async def control(self, verb: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """The leader's reply to ``verb``; an HTTP error saying why when it has none."""
        try:
            return await self.link.request(verb, payload)
        except ControlError as exc:
            raise control_http_error(exc) from None


def control_http_error(exc: ControlError) -> HTTPException:
    """The HTTP answer to a failed control request.

    503 without a leader (or when the leader's database fails), 400 for a bad request, else 409.
    """
    text = str(exc)
    if not exc.reply or "no longer leads" in text or text.startswith("fleet database"):
        return HTTPException(503, f"the fleet's leader cannot be reached: {text}")
    if text.startswith("bad request") or text.startswith("unknown node"):
        return HTTPException(400, text)
    return HTTPException(409, text)


def get_fleet(request: Request) -> FleetContext:
    """The :class:`FleetContext` of the app serving ``request`` (a FastAPI dependency)."""
    ctx: FleetContext = request.app.state.ctx
    return ctx


Fleet = Annotated[FleetContext, Depends(get_fleet)]
"""A handler parameter that receives the :class:`FleetContext`."""
