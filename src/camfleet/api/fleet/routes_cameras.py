"""Cameras on the coordinator: the node's paths and shapes; writes go to the leader, reads to the database."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse

from camfleet.cluster.control import ControlError
from camfleet.cluster.fleetconfig import default_base
from camfleet.config import ConfigError
from camfleet.config.sources import camera_dicts, with_cameras
from camfleet.fleetstore.store import FleetCamera
from camfleet.pipeline.validate import element_catalog

from ..auth import authorize
from ..cameras import check_depth, mask_camera
from ..issues import issues_of
from ..routers.common import CameraName
from ..schemas import Change, Changes, Issue, ValidationResult
from .context import Fleet, FleetContext, control_http_error
from .schemas import FleetApplyResult, FleetCameraView

router = APIRouter(prefix="/api", tags=["cameras"], dependencies=[Depends(authorize)])
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationResult, "description": "the resulting fleet configuration is invalid"},
    503: {"description": "no leader coordinator answers"},
}


def _section(cam: FleetCamera | None, resolved: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The camera as the API shows it: ``resolved`` (defaults filled in) else its settings, with placement."""
    if cam is None:
        return None
    return mask_camera((resolved or cam.settings) | ({"placement": cam.placement} if cam.placement else {}))


_resolved_lock = threading.Lock()
_resolved_last: tuple[tuple[int, str], dict[str, dict[str, Any]]] | None = None


def _resolved(ctx: FleetContext, current: dict[str, FleetCamera]) -> dict[str, dict[str, Any]]:
    """Each camera in force as a node shows it (``config``): its settings on the base, defaults filled in.

    Validating the whole fleet costs milliseconds per camera, so the last answer is kept until the
    cameras change. A camera that no longer validates on the base (empty answer) shows its settings.
    """
    global _resolved_last
    if not current:
        return {}
    key = (id(ctx.base), json.dumps({n: c.settings for n, c in current.items()}, sort_keys=True, default=str))
    with _resolved_lock:
        if _resolved_last is not None and _resolved_last[0] == key:
            return _resolved_last[1]
    try:
        config = with_cameras(ctx.base or default_base(), {n: c.settings for n, c in current.items()},
                              elements=element_catalog())
        dicts = camera_dicts(config)
    except ConfigError:
        dicts = {}
    with _resolved_lock:
        _resolved_last = (key, dicts)
    return dicts


def _pending(current: FleetCamera | None, staged: FleetCamera | None, is_staged: bool) -> str:
    if not is_staged:
        return "none"
    if staged is None:
        return "delete"
    return "add" if current is None else "change"


def _views(ctx: FleetContext) -> dict[str, FleetCameraView]:
    """Every applied or staged camera (blocking: reads the database)."""
    current, staged, where = ctx.store.cameras(), ctx.store.staged(), ctx.store.assignments()
    resolved = _resolved(ctx, current)
    views: dict[str, FleetCameraView] = {}
    for name in sorted(set(current) | set(staged)):
        cur, st = current.get(name), staged.get(name)
        if cur is None and st is None:
            continue  # the staged removal of a camera never applied: nothing to show
        views[name] = FleetCameraView(name=name, config=_section(cur, resolved.get(name)),
                                      staged=_section(st),
                                      pending=_pending(cur, st, name in staged),  # type: ignore[arg-type]
                                      node=where[name][0] if name in where else None)
    return views


def _issue(text: str) -> Issue:
    path, sep, message = text.partition(": ")
    return Issue(path=path, message=message) if sep else Issue(path="cameras", message=text)


def _refused(exc: ControlError) -> JSONResponse:
    issues = exc.reply.get("issues")
    if not isinstance(issues, list):
        error = control_http_error(exc)
        return JSONResponse({"detail": error.detail}, status_code=error.status_code)
    body = ValidationResult(valid=False, issues=[_issue(str(i)) for i in issues] or [_issue(str(exc))])
    return JSONResponse(body.model_dump(), status_code=422)


@router.get("/cameras", response_model=list[FleetCameraView])
async def list_cameras(ctx: Fleet) -> list[FleetCameraView]:
    """Every fleet camera in force or staged (credentials masked), with the node it runs on."""
    return list((await asyncio.to_thread(_views, ctx)).values())


@router.get("/cameras/{name}", response_model=FleetCameraView,
            responses={404: {"description": "no such camera"}})
async def get_camera(name: CameraName, ctx: Fleet) -> FleetCameraView:
    """One camera, as in force and as staged (credentials masked), with its node."""
    view = (await asyncio.to_thread(_views, ctx)).get(name)
    if view is None:
        raise HTTPException(404, "no such camera")
    return view


@router.put("/cameras/{name}", response_model=FleetCameraView, responses=_INVALID)
async def put_camera(
    name: CameraName,
    ctx: Fleet,
    camera: Annotated[dict[str, Any], Body(description="the camera's section, as in a node's YAML, plus "
                                           "optional placement hints; masked URLs keep their credentials")],
) -> Any:
    """Stage a new or changed camera at the leader (nothing runs until apply); 422 with the issues."""
    try:
        check_depth(camera, f"cameras.{name}")
    except ConfigError as exc:
        body = ValidationResult(valid=False, issues=issues_of(exc, positions=False))
        return JSONResponse(body.model_dump(), status_code=422)
    try:
        await ctx.link.request("stage", {"cameras": {name: camera}})
    except ControlError as exc:
        return _refused(exc)
    return (await asyncio.to_thread(_views, ctx))[name]


@router.delete("/cameras/{name}", response_model=FleetCameraView,
               responses={404: {"description": "no such camera"}, 503: _INVALID[503]})
async def delete_camera(name: CameraName, ctx: Fleet) -> FleetCameraView:
    """Stage the camera's removal at the leader (an added-but-not-applied camera is simply unstaged)."""
    views = await asyncio.to_thread(_views, ctx)
    if name not in views:
        raise HTTPException(404, "no such camera")
    await ctx.control("stage", {"cameras": {name: None}})
    return (await asyncio.to_thread(_views, ctx)).get(name) or FleetCameraView(name=name, config=None)


def _changes(ctx: FleetContext) -> Changes:
    current, staged = ctx.store.cameras(), ctx.store.staged()
    resolved = _resolved(ctx, current)
    out: list[Change] = []
    for name, cam in staged.items():
        if cam is None and name not in current:
            continue
        out.append(Change(camera=name, action=_pending(current.get(name), cam, True),  # type: ignore[arg-type]
                          before=_section(current.get(name), resolved.get(name)),
                          after=_section(cam)))
    return Changes(changes=out)


@router.get("/changes", response_model=Changes)
async def changes(ctx: Fleet) -> Changes:
    """The staged edits against the fleet's cameras in force (credentials masked)."""
    return await asyncio.to_thread(_changes, ctx)


@router.post("/changes/discard", response_model=Changes, responses={503: _INVALID[503]})
async def discard(ctx: Fleet) -> Changes:
    """Drop every staged edit (at the leader)."""
    await ctx.control("discard")
    return Changes(changes=[])


@router.post("/apply", response_model=FleetApplyResult,
             responses={**_INVALID, 409: {"model": FleetApplyResult, "description": "the leader refused it"}})
async def apply(ctx: Fleet) -> Any:
    """Apply the staged edits fleet-wide (all or nothing), then the leader places the cameras.

    Invalid: 422 with the issues, nothing changes. ``placed`` says which node runs each camera.
    """
    try:
        reply = await ctx.link.request("apply", {})
    except ControlError as exc:
        error = control_http_error(exc)
        if error.status_code == 409 and not isinstance(exc.reply.get("issues"), list):
            generation = await asyncio.to_thread(ctx.store.counter, "generation")
            body = FleetApplyResult(applied=False, generation=generation, added=[], removed=[], restarted=[],
                                    updated=[], errors=[str(error.detail)])
            return JSONResponse(body.model_dump(), status_code=409)  # the node's shape of a refusal
        return _refused(exc)
    ctx.status.invalidate()
    # the leader's reply names where the added and changed cameras went (capped); the rest run
    # where the pass this apply waited for recorded them
    placed = {cam: node for cam, (node, _token) in (await asyncio.to_thread(ctx.store.assignments)).items()}
    placed.update(reply.get("placed") or {})
    return FleetApplyResult(applied=True, generation=int(reply.get("generation", 0)),
                            added=reply.get("added", []), removed=reply.get("removed", []), restarted=[],
                            updated=reply.get("changed", []), errors=[], placed=placed,
                            unplaced=reply.get("unplaced", {}), warnings=reply.get("warnings", []))
