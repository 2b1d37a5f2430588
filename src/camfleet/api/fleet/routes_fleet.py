"""Health, readiness, status and the caller on the coordinator, and the fleet's own endpoints."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.responses import JSONResponse

from camfleet.cluster.control import ask_all
from camfleet.config.model import CAMERA_NAME_PATTERN

from ..auth import Principal, authorize
from ..schemas import Health, Me
from .context import Fleet, FleetContext

log = logging.getLogger("camfleet.api.fleet")

public = APIRouter(prefix="/api", tags=["system"])
router = APIRouter(prefix="/api", tags=["system"], dependencies=[Depends(authorize)])
fleet = APIRouter(prefix="/api/fleet", tags=["fleet"], dependencies=[Depends(authorize)])
_NO_LEADER: dict[int | str, dict[str, Any]] = {503: {"description": "no leader coordinator answers"}}
_OBJECT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}}}
NodeId = Annotated[str, Path(min_length=1, max_length=128, description="node id")]


@public.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the coordinator's API answers."""
    return Health(status="ok")


@public.get("/ready", response_model=Health, responses={503: {"model": Health}})
async def ready(ctx: Fleet) -> Response:
    """Readiness: connected to NATS and the fleet database answers (503 otherwise)."""
    checks = {"nats": ctx.link.connected, "store": False}
    try:
        await asyncio.to_thread(ctx.store.ping)
        checks["store"] = True
    except Exception:
        log.warning("readiness: fleet database unreachable", exc_info=True)
    ok = all(checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/status", responses=_OBJECT)
async def status(ctx: Fleet) -> Response:
    """Every camera of every node (state, fps, last error, restarts, processes), each with its ``node``."""
    body = await asyncio.to_thread(ctx.status.body)
    return Response(body, media_type="application/json")


@router.get("/me", response_model=Me)
async def me(principal: Annotated[Principal, Depends(authorize)], ctx: Fleet) -> Me:
    """The caller's token name and role."""
    return Me(name=principal.name, role=principal.role, open=ctx.open)


def _stored_nodes(ctx: FleetContext) -> list[dict[str, Any]]:
    """The nodes as the last leader recorded them in the database (blocking)."""
    where: dict[str, list[str]] = {}
    for camera, (node, _token) in ctx.store.assignments().items():
        where.setdefault(node, []).append(camera)
    out = []
    for node_id, row in ctx.store.nodes().items():
        record = row.get("record") or {}
        out.append({"node_id": node_id, "state": row.get("state"), "hostname": record.get("hostname"),
                    "labels": record.get("labels", {}), "cordoned": bool(row.get("cordoned")),
                    "draining": bool(row.get("draining")), "capacity": record.get("capacity", {}),
                    "version": record.get("version"),
                    "cameras": sorted(where.get(node_id, [])), "status_at": row.get("status_at")})
    return out


@fleet.get("/nodes", responses=_OBJECT)
async def nodes(ctx: Fleet) -> dict[str, Any]:
    """Every node: state, capacity, utilisation, cameras, flags, desired and applied revisions.

    ``source`` says whose view it is: ``leader`` (live), or ``database`` (what the last leader
    recorded, fewer fields) while no leader answers.
    """
    try:
        return {"nodes": (await ask_all(ctx.control, "nodes", "nodes"))["nodes"], "source": "leader"}
    except HTTPException as exc:
        if exc.status_code != 503:
            raise
    return {"nodes": await asyncio.to_thread(_stored_nodes, ctx), "source": "database"}


@fleet.get("/assignments", responses={**_OBJECT, **_NO_LEADER})
async def assignments(ctx: Fleet) -> dict[str, Any]:
    """Where each camera runs (node, fencing token) and why the unplaced ones run nowhere."""
    reply = await ask_all(ctx.control, "assignments", "assignments")  # every page
    return {"assignments": reply["assignments"], "unplaced": reply.get("unplaced", {})}


@fleet.get("/history", responses=_OBJECT)
async def history(
    ctx: Fleet,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
    camera: Annotated[str | None, Query(pattern=CAMERA_NAME_PATTERN)] = None,
) -> dict[str, Any]:
    """Placement changes newest first (who moved where, why, when), from the fleet database."""
    return {"history": await asyncio.to_thread(ctx.store.history, limit, camera)}


@fleet.get("/leader", responses={**_OBJECT, **_NO_LEADER})
async def leader(ctx: Fleet) -> dict[str, Any]:
    """Which coordinator leads (id, host, pid, term), and which one answered this request."""
    reply = await ctx.control("leader")
    reply.pop("ok", None)
    return reply | {"answered_by": ctx.coordinator_id}


async def _flag(ctx: Fleet, node_id: str, verb: Literal["drain", "cordon", "uncordon"]) -> dict[str, Any]:
    reply = await ctx.control(verb, {"node": node_id})
    reply.pop("ok", None)
    return reply


_FLAG: dict[int | str, dict[str, Any]] = {**_OBJECT, **_NO_LEADER, 400: {"description": "unknown node"}}


@fleet.post("/nodes/{node_id}/drain", responses=_FLAG)
async def drain(node_id: NodeId, ctx: Fleet) -> dict[str, Any]:
    """Move the node's cameras elsewhere (in batches) and place nothing new on it."""
    return await _flag(ctx, node_id, "drain")


@fleet.post("/nodes/{node_id}/cordon", responses=_FLAG)
async def cordon(node_id: NodeId, ctx: Fleet) -> dict[str, Any]:
    """Place nothing new on the node (what runs there stays)."""
    return await _flag(ctx, node_id, "cordon")


@fleet.post("/nodes/{node_id}/uncordon", responses=_FLAG)
async def uncordon(node_id: NodeId, ctx: Fleet) -> dict[str, Any]:
    """Clear the node's cordon and drain flags."""
    return await _flag(ctx, node_id, "uncordon")
