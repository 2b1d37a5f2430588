"""Liveness, readiness, the node's status, and who the caller is."""

from __future__ import annotations

import asyncio
import logging
import shutil
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from ..auth import Principal, authorize
from ..context import ApiContext, Ctx
from ..schemas import CameraStorage, Health, Me, Storage

log = logging.getLogger("camfleet.api")

public = APIRouter(prefix="/api", tags=["system"])
router = APIRouter(prefix="/api", tags=["system"], dependencies=[Depends(authorize)])


@public.get("/health", response_model=Health)
async def health() -> Health:
    """Liveness: the API process answers."""
    return Health(status="ok")


def _ready_checks(ctx: ApiContext) -> dict[str, bool]:
    checks = {"node": False, "store": False}
    try:
        ctx.status.get()
        checks["node"] = True
    except Exception:
        log.warning("readiness: node status failed", exc_info=True)
    try:
        ctx.store.ping()  # constant time: readiness is public and polled; never scan a table for it
        checks["store"] = True
    except Exception:
        log.warning("readiness: store unreachable", exc_info=True)
    return checks


@public.get("/ready", response_model=Health, responses={503: {"model": Health}})
async def ready(ctx: Ctx) -> Response:
    """Readiness: the node runs and the store answers (503 otherwise)."""
    checks = await asyncio.to_thread(_ready_checks, ctx)
    ok = all(checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/status", responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}})
async def status(ctx: Ctx) -> Response:
    """Every camera (state, fps, last error, restarts), process and detector of the node."""
    body = await asyncio.to_thread(ctx.status.body)
    return Response(body, media_type="application/json")


@router.get("/me", response_model=Me)
async def me(principal: Annotated[Principal, Depends(authorize)], ctx: Ctx) -> Me:
    """The caller's token name and role."""
    return Me(name=principal.name, role=principal.role, open=ctx.open)


@router.get("/storage", response_model=Storage)
def storage(ctx: Ctx) -> Storage:
    """Free and total space of the recordings' disk, events stored, recordings per camera."""
    total = free = None
    path = ctx.recordings_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        usage = shutil.disk_usage(path)
        total, free = usage.total, usage.free
    except OSError:
        log.warning("disk usage of %s unavailable", path)
    totals = ctx.store.segment_totals()
    cams = {name: CameraStorage(segments=n, bytes=size) for name, (n, size) in totals.items()}
    return Storage(recordings_dir_total_bytes=total, recordings_dir_free_bytes=free,
                   events=ctx.store.count_events(), cameras=cams)
