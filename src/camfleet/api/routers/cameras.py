"""Cameras: read, stage edits and deletions, see the pending diff, apply or discard it."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import JSONResponse

from camfleet.config import ConfigError
from camfleet.config.sources import camera_dicts, with_cameras
from camfleet.pipeline.validate import element_catalog

from ..auth import authorize
from ..cameras import applied_after, check_depth, mask_camera, staged_result, unmask_sources
from ..context import ApiContext, Ctx
from ..issues import issues_of
from ..schemas import ApplyResult, CameraView, Change, Changes, ValidationResult
from .common import CameraName

log = logging.getLogger("camfleet.api")

router = APIRouter(prefix="/api", tags=["cameras"], dependencies=[Depends(authorize)])
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationResult, "description": "the resulting configuration is invalid"},
}


def _invalid(error: ConfigError) -> JSONResponse:
    body = ValidationResult(valid=False, issues=issues_of(error, positions=False))
    return JSONResponse(body.model_dump(), status_code=422)


def _pending(current: dict[str, Any] | None, staged: dict[str, Any] | None, is_staged: bool) -> str:
    if not is_staged:
        return "none"
    if staged is None:
        return "delete"
    return "add" if current is None else "change"


def _views(ctx: ApiContext) -> dict[str, CameraView]:
    current = camera_dicts(ctx.node.current_config())
    staged = ctx.store.staged_cameras()
    views: dict[str, CameraView] = {}
    for name in sorted(set(current) | set(staged)):
        cur, st = current.get(name), staged.get(name)
        views[name] = CameraView(name=name, config=mask_camera(cur), staged=mask_camera(st),
                                 pending=_pending(cur, st, name in staged))  # type: ignore[arg-type]
    return views


@router.get("/cameras", response_model=list[CameraView])
def list_cameras(ctx: Ctx) -> list[CameraView]:
    """Every camera in force or staged, credentials masked."""
    return list(_views(ctx).values())


@router.get("/cameras/{name}", response_model=CameraView, responses={404: {"description": "no such camera"}})
def get_camera(name: CameraName, ctx: Ctx) -> CameraView:
    """One camera, as in force and as staged (credentials masked)."""
    view = _views(ctx).get(name)
    if view is None:
        raise HTTPException(404, "no such camera")
    return view


@router.put("/cameras/{name}", response_model=CameraView, responses=_INVALID)
def put_camera(
    name: CameraName,
    ctx: Ctx,
    camera: Annotated[dict[str, Any], Body(description="the camera's section, as in the YAML file; masked "
                                           "URLs (as GET returns them) keep their credentials")],
) -> Any:
    """Stage a new or changed camera (nothing runs until apply); 422 with the issues if it is invalid."""
    base = ctx.node.current_config()
    staged = ctx.store.staged_cameras()
    known = [camera_dicts(base).get(name), staged.get(name)]
    try:
        check_depth(camera, f"cameras.{name}")
        camera = unmask_sources(camera, known, where=f"cameras.{name}.")
        with_cameras(base, staged_result(base, {**staged, name: camera}), elements=element_catalog())
    except ConfigError as exc:
        return _invalid(exc)
    ctx.store.stage_camera(name, camera)
    return _views(ctx)[name]


@router.delete("/cameras/{name}", response_model=CameraView,
               responses={404: {"description": "no such camera"}})
def delete_camera(name: CameraName, ctx: Ctx) -> CameraView:
    """Stage the camera's removal (an added-but-not-applied camera is simply unstaged)."""
    in_force = name in ctx.node.current_config().cameras
    staged = ctx.store.staged_cameras()
    if not in_force and name not in staged:
        raise HTTPException(404, "no such camera")
    if in_force:
        ctx.store.stage_camera(name, None)
    else:
        # only staged: forget the staged add (discard_staged drops all, so restage the others)
        others = {n: c for n, c in staged.items() if n != name}
        ctx.store.discard_staged()
        for other, cfg in others.items():
            ctx.store.stage_camera(other, cfg)
    return _views(ctx).get(name) or CameraView(name=name, config=None, pending="none")


@router.get("/changes", response_model=Changes)
def changes(ctx: Ctx) -> Changes:
    """The staged edits against the cameras in force (credentials masked)."""
    current = camera_dicts(ctx.node.current_config())
    out: list[Change] = []
    for name, cfg in ctx.store.staged_cameras().items():
        action = _pending(current.get(name), cfg, True)
        if action == "delete" and name not in current:
            continue
        out.append(Change(camera=name, action=action,  # type: ignore[arg-type]
                          before=mask_camera(current.get(name)), after=mask_camera(cfg)))
    return Changes(changes=out)


@router.post("/changes/discard", response_model=Changes)
def discard(ctx: Ctx) -> Changes:
    """Drop every staged edit."""
    ctx.store.discard_staged()
    return Changes(changes=[])


@router.post("/apply", response_model=ApplyResult,
             responses={**_INVALID,
                        409: {"model": ApplyResult, "description": "the node could not apply it"}})
def apply(ctx: Ctx) -> Any:
    """Validate the configuration with the staged edits and make the node run it; all or nothing.

    Invalid: 422 with the issues, nothing changes. The node refusing: 409, the
    previous configuration is restored and the edits stay staged.
    """
    with ctx.apply_lock:
        base = ctx.node.current_config()
        staged = ctx.store.staged_cameras()
        try:
            new = with_cameras(base, staged_result(base, staged), elements=element_catalog())
        except ConfigError as exc:
            return _invalid(exc)
        applied, deleted = applied_after(ctx.store, staged)
        result = ctx.node.apply_config(new, base=base)
        body = ApplyResult(applied=result.ok, generation=result.generation, added=result.added,
                           removed=result.removed, restarted=result.restarted, updated=result.updated,
                           errors=result.errors)
        if not result.ok:  # the node changed nothing
            log.warning("apply refused by the node: %s", "; ".join(result.errors))
            return JSONResponse(body.model_dump(), status_code=409)
        try:
            ctx.store.set_applied_cameras(applied, deleted=deleted)
            ctx.store.discard_staged()
        except Exception:
            log.exception("storing the applied cameras failed; restoring the previous configuration")
            ctx.node.apply_config(base)
            raise
        ctx.status.invalidate()
        return body
