"""``/api/storage`` on the coordinator: every node's storage (asked through its API), summed.

Each node answers for its own disk and recordings (a signed ``GET /api/storage`` of
its agent API, all nodes at once); the sums keep the node's shape, so a client
reading a node's storage reads the fleet's the same way. A node that does not
answer is named in ``nodes`` with why ("node n2 unreachable since ..."), never a 5xx;
one lost for over a day is no longer listed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import func, select

from camfleet.fleetstore.events import events_table

from ..auth import authorize
from ..schemas import CameraStorage, Storage
from .context import Fleet, FleetContext
from .media import proxy_of
from .proxy import NodeProxy

log = logging.getLogger("camfleet.api.fleet")

router = APIRouter(prefix="/api", tags=["system"], dependencies=[Depends(authorize)])
NODE_TIMEOUT_S = 5.0
"""How long one node may take to report its storage (seconds)."""
FORGET_LOST_S = 86400.0
"""A node lost (no heartbeat, or stopped) for longer than this is no longer listed (seconds)."""


class NodeStorage(BaseModel):
    """One node's storage as it reported it, or why it did not (``error``)."""

    storage: Storage | None = None
    error: str | None = None


class FleetStorage(Storage):
    """The node's storage shape summed over the nodes that answered, plus each node's own (``nodes``).

    ``events`` counts the fleet's events in the central database; the disk totals are
    null when no node answered.
    """

    nodes: dict[str, NodeStorage] = Field(default_factory=dict, description="node id → its storage or error")


def storage_nodes(rows: dict[str, dict[str, Any]], heard: Iterable[str], now: float) -> list[str]:
    """The nodes to ask: every node in the fleet database (``rows``: its node rows) or heard from.

    A node lost for more than :data:`FORGET_LOST_S` (it stopped, or was taken away) is
    left out: its disk is no longer the fleet's, and asking would only wait for it.
    """
    kept = {node_id for node_id, row in rows.items()
            if row.get("state") != "lost" or now - float(row.get("updated_at") or 0.0) <= FORGET_LOST_S}
    return sorted(kept | set(heard))


def _known_nodes(ctx: FleetContext) -> tuple[list[str], int]:
    """The nodes to ask (:func:`storage_nodes`) and the fleet's event count (blocking)."""
    nodes = storage_nodes(ctx.store.nodes(), ctx.link.statuses(), time.time())
    with ctx.store.engine.connect() as conn:
        events = int(conn.execute(select(func.count()).select_from(events_table)).scalar_one())
    return nodes, events


async def _ask(proxy: NodeProxy, node_id: str) -> NodeStorage:
    try:
        resp = await proxy.call(node_id, "GET", "/api/storage", timeout_s=NODE_TIMEOUT_S)
        if resp.status_code != 200:
            return NodeStorage(error=f"node {node_id} answered {resp.status_code}")
        return NodeStorage(storage=Storage.model_validate_json(resp.content))
    except HTTPException as exc:
        return NodeStorage(error=str(exc.detail))
    except ValidationError:
        return NodeStorage(error=f"node {node_id} sent storage in an unknown shape")


def total(per_node: dict[str, NodeStorage], events: int) -> FleetStorage:
    """The fleet's storage: ``per_node``'s sums (disks, each camera's segments and bytes)."""
    answered = [n.storage for n in per_node.values() if n.storage is not None]
    disk_total = [s.recordings_dir_total_bytes for s in answered if s.recordings_dir_total_bytes is not None]
    disk_free = [s.recordings_dir_free_bytes for s in answered if s.recordings_dir_free_bytes is not None]
    cameras: dict[str, CameraStorage] = {}
    for s in answered:
        for name, cam in s.cameras.items():
            have = cameras.get(name)  # a camera that moved has recordings on both nodes
            cameras[name] = cam if have is None else CameraStorage(segments=have.segments + cam.segments,
                                                                   bytes=have.bytes + cam.bytes)
    return FleetStorage(recordings_dir_total_bytes=sum(disk_total) if disk_total else None,
                        recordings_dir_free_bytes=sum(disk_free) if disk_free else None,
                        events=events, cameras=dict(sorted(cameras.items())), nodes=per_node)


@router.get("/storage", response_model=FleetStorage)
async def storage(request: Request, ctx: Fleet) -> Any:
    """Free and total space of every node's recordings disk, events stored, recordings per camera.

    Sums over the nodes that answered; ``nodes`` has each node's own answer, or why it has none.
    """
    node_ids, events = await asyncio.to_thread(_known_nodes, ctx)
    proxy = proxy_of(request)
    answers = await asyncio.gather(*(_ask(proxy, n) for n in node_ids))
    return total(dict(zip(node_ids, answers, strict=True)), events)
