"""Frigate's HTTP API under ``/frigate/api``, for Home Assistant's Frigate integration (``compat.frigate``).

Point the integration at ``http://HOST:PORT/frigate``: it joins ``api/...``
onto that URL (yarl's ``/``), so every path it calls lands here and none
clashes with camfleet's own ``/api``. Everything answers 404 unless the
configuration in force has ``compat: {frigate: true}`` (checked per request,
so a reload turns it on or off).

Auth is camfleet's: a bearer API token, the UI's cookie, open mode, or the
session JWT that ``POST /frigate/api/login`` issues for an API token given as
the password (the integration's username/password login; see
:mod:`camfleet.api.frigate_session`). Every route but login only reads, so a
viewer token is enough. Media is served by camfleet's own code: snapshots
from ``<data_dir>/snapshots``, clips through :mod:`camfleet.api.clips`, the
latest frame through :mod:`camfleet.api.live`. Shapes: :mod:`camfleet.api.frigate_shapes`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from PIL import Image
from pydantic import BaseModel, Field

from camfleet.config import Config
from camfleet.detect.models import load_labels
from camfleet.detect.specs import model_spec
from camfleet.pipeline.detect import DetectConfig
from camfleet.store import EventRecord

from .. import frigate_shapes as shapes
from ..auth import Principal, authorize, bearer
from ..clips import clip_of_event, event_span
from ..context import ApiContext, Ctx
from ..files import file_response, safe_file
from ..frigate_session import COOKIE, Sessions, looks_like_jwt
from ..live import NoFrame, encode_jpeg
from .common import CameraName, EventId, find_event

log = logging.getLogger("camfleet.api")

PREFIX = "/frigate/api"
MAX_EVENTS = 500
"""Most events one ``/events`` answer holds (Frigate's clients ask for up to 10000)."""
SCAN_LIMIT = 5000
"""Most stored events one ``/events`` request looks at while filtering."""
THUMBNAIL_HEIGHT = 175
"""Frigate's thumbnail height, pixels."""
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _-]{0,63}$")
_SCAN_BATCH = 200


def _enabled(ctx: Ctx) -> None:
    """404 unless the configuration in force has ``compat.frigate: true``."""
    compat = getattr(ctx.node.current_config(), "compat", None)
    if compat is None or not compat.frigate:
        raise HTTPException(404, "Not Found")


def sessions_of(request: Request) -> Sessions:
    """The app's session issuer (made by ``create_app``)."""
    found: Sessions = request.app.state.frigate_sessions
    return found


def compat_auth(
    request: Request,
    ctx: Ctx,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller: a session JWT (bearer or ``frigate_token`` cookie), else camfleet's own auth (401)."""
    header = credentials.credentials if credentials is not None else None
    if header is not None:
        session = header if looks_like_jwt(header) else None  # a header, when given, is what counts
    else:
        session = request.cookies.get(COOKIE)
    if session and request.method in ("GET", "HEAD"):
        principal = sessions_of(request).principal(session)
        if principal is not None:
            request.state.principal = principal
            return principal
    return authorize(request, ctx, credentials)


Caller = Annotated[Principal, Depends(compat_auth)]
router = APIRouter(prefix=PREFIX, tags=["frigate"], include_in_schema=False,
                   dependencies=[Depends(_enabled)])
reads = APIRouter(prefix=PREFIX, tags=["frigate"], include_in_schema=False,
                  dependencies=[Depends(_enabled), Depends(compat_auth)])


# ----------------------------------------------------------------------------- links to Frigate's UI

# Home Assistant links a device to "<url>/cameras/<camera>" and "<url>/#<camera>" (Frigate's web UI):
# those land on camfleet's UI
ui_links = APIRouter(prefix="/frigate", include_in_schema=False, dependencies=[Depends(_enabled)])


@ui_links.get("")
@ui_links.get("/")
@ui_links.get("/cameras/{camera}")
def to_ui() -> RedirectResponse:
    """Frigate UI links: camfleet's web UI."""
    return RedirectResponse("/", status_code=307)


# ----------------------------------------------------------------------------- login


class LoginBody(BaseModel):
    """Frigate's login body: the integration's username (any) and password (a camfleet API token)."""

    user: str = Field(default="", max_length=256)
    password: str = Field(max_length=512)


@router.post("/login")
async def login(body: LoginBody, request: Request) -> Response:
    """Trade an API token (the password) for a session cookie ``frigate_token`` (401 if it is not valid)."""
    try:
        got = await asyncio.to_thread(sessions_of(request).login, body.password)
    except OSError as exc:  # the session key cannot be read or written (data_dir)
        log.error("Frigate login: session key unavailable: %s", exc)
        return JSONResponse({"message": "session key unavailable (see the node's log)"}, status_code=503)
    if got is None:
        log.info("Frigate login refused (user %r)", body.user[:64])
        return JSONResponse({"message": "Login failed"}, status_code=401)
    session, principal = got
    request.state.principal = principal
    response = Response(status_code=200)
    response.set_cookie(
        COOKIE, session.token, max_age=max(0, session.expires - int(time.time())), path="/frigate",
        httponly=True, samesite="strict", secure=request.url.scheme == "https",
    )
    return response


# ----------------------------------------------------------------------------- version, config, stats


@reads.get("/version", response_class=PlainTextResponse)
async def version() -> PlainTextResponse:
    """The emulated Frigate version and camfleet's (text, like Frigate's)."""
    return PlainTextResponse(shapes.version_string())


def camera_labels(config: Config, camera: str) -> list[str]:
    """What ``camera``'s detector reports: its ``detect`` element's ``labels``, else its model's labels."""
    cam = config.cameras[camera]
    spec = next((s for s in config.pipelines.get(cam.pipeline, []) if s.name == "detect"), None)
    if spec is None:
        return []
    try:
        detect = DetectConfig.model_validate(dict(spec.params))
    except ValueError:
        return []
    names: list[str] = list(detect.labels)
    if not names:
        try:
            names = list(load_labels(model_spec(config, detect.model)).values())
        except Exception:  # a missing or changed labels file: the node reports that itself
            log.warning("labels of model %r unavailable", detect.model, exc_info=True)
            return []
    return sorted({n for n in names if _LABEL_RE.match(n)})


@reads.get("/config")
def frigate_config(ctx: Ctx) -> dict[str, Any]:
    """The configuration in Frigate's shape (no credentials)."""
    config = ctx.node.current_config()
    labels = {name: camera_labels(config, name) for name in config.cameras}
    return shapes.config_shape(config, labels)


def _disk(path: Path) -> shapes.DiskUsage | None:
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    return shapes.DiskUsage(usage.total, usage.used, usage.free)


def _mem_total_mb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError):
        return 0.0


@reads.get("/stats")
def frigate_stats(ctx: Ctx) -> dict[str, Any]:
    """Frigate's stats (polled by the integration): camera rates and pids, detectors, uptime, storage."""
    status = ctx.status.get()
    storage = {str(ctx.recordings_dir): _disk(ctx.recordings_dir), str(ctx.data_dir): _disk(ctx.data_dir)}
    cameras = ctx.node.current_config().cameras
    return shapes.stats_shape(status, cameras, storage, _mem_total_mb(), time.time())


# ----------------------------------------------------------------------------- events


def _snapshot_path(ctx: ApiContext, event: EventRecord) -> Path:
    """The event's snapshot file (404 if it has none)."""
    return safe_file(ctx.snapshots_dir, f"{event.camera}/{event.id}.jpg")


def _frame_size(ctx: ApiContext, config: Config, event: EventRecord) -> tuple[int, int] | None:
    """The detect frame's size, pixels: configured, else the full-size snapshot's (None: unknown)."""
    cam = config.cameras.get(event.camera)
    if cam is None:
        return None
    if cam.detect.width and cam.detect.height:
        return cam.detect.width, cam.detect.height
    spec = next((s for s in config.pipelines.get(cam.pipeline, []) if s.name == "snapshot"), None)
    if event.snapshot is None or spec is None or spec.params.get("height"):
        return None  # a scaled snapshot does not give the frame's size
    try:
        with Image.open(_snapshot_path(ctx, event)) as im:  # reads the header only
            return im.size
    except (HTTPException, OSError):
        return None


def _has_clip(ctx: ApiContext, event: EventRecord) -> bool:
    """Whether recordings cover the span the event's clip would (so ``clip.mp4`` has footage)."""
    start, end = event_span(ctx, event)
    return bool(ctx.store.query_segments(camera=event.camera, start=start, end=end))


def _shape(ctx: ApiContext, config: Config, event: EventRecord, sizes: dict[str, tuple[int, int] | None],
           has_clip: bool | None = None) -> dict[str, Any]:
    if event.camera not in sizes or sizes[event.camera] is None:
        sizes[event.camera] = _frame_size(ctx, config, event)
    clip = _has_clip(ctx, event) if has_clip is None else has_clip
    return shapes.event_shape(event, has_clip=clip, frame=sizes[event.camera])


Filter = Annotated[str | None, Query(max_length=4096)]
Flag = Annotated[int | None, Query(ge=0, le=1)]
Epoch = Annotated[float | None, Query(ge=0, le=1e11)]


@reads.get("/events")
def events(
    ctx: Ctx,
    camera: Filter = None, cameras: Filter = None, label: Filter = None, labels: Filter = None,
    zone: Filter = None, zones: Filter = None, sub_label: Filter = None, sub_labels: Filter = None,
    after: Epoch = None, before: Epoch = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
    has_clip: Flag = None, has_snapshot: Flag = None, in_progress: Flag = None, favorites: Flag = None,
    include_thumbnails: Flag = None,
) -> list[dict[str, Any]]:
    """Events newest first, with Frigate's filters (lists are comma-separated; ``all``: no filter).

    At most :data:`MAX_EVENTS` are returned, and :data:`SCAN_LIMIT` stored
    events looked at; ``include_thumbnails`` is accepted and ignored (Frigate
    no longer sends them either).
    """
    del include_thumbnails
    filt = shapes.EventFilter(
        cameras=shapes.parse_list(cameras if cameras not in (None, "all") else camera),
        labels=shapes.parse_list(labels if labels not in (None, "all") else label),
        zones=shapes.parse_list(zones if zones not in (None, "all") else zone),
        sub_labels=shapes.parse_list(sub_labels if sub_labels not in (None, "all") else sub_label),
        has_snapshot=None if has_snapshot is None else bool(has_snapshot),
        in_progress=None if in_progress is None else bool(in_progress),
        favorites=bool(favorites),
    )
    want = min(limit, MAX_EVENTS)
    config = ctx.node.current_config()
    sizes: dict[str, tuple[int, int] | None] = {}
    out: list[dict[str, Any]] = []
    offset = 0
    # "after"/"before" are exclusive in Frigate; the store's "after" is inclusive: the filter below trims it
    while len(out) < want and offset < SCAN_LIMIT:
        batch = ctx.store.query_events(
            camera=filt.single(filt.cameras), label=filt.single(filt.labels),
            zone=None if filt.single(filt.zones) == "None" else filt.single(filt.zones),  # "None": no zone
            after=after, before=before, limit=_SCAN_BATCH, offset=offset,
        )
        offset += len(batch)
        for event in batch:
            if (after is not None and event.start <= after) or not filt.matches(event):
                continue
            clip = _has_clip(ctx, event)
            if has_clip is not None and clip != bool(has_clip):
                continue
            out.append(_shape(ctx, config, event, sizes, clip))
            if len(out) >= want:
                break
        if len(batch) < _SCAN_BATCH:
            break
    return out


@reads.get("/events/{event_id}")
def event(event_id: EventId, ctx: Ctx) -> dict[str, Any]:
    """One event in Frigate's shape (404: none)."""
    found = find_event(ctx.store, event_id)
    return _shape(ctx, ctx.node.current_config(), found, {})


def _jpeg(path: Path | BinaryIO, box: list[float] | None, *, crop: bool, height: int | None,
          quality: int) -> bytes:
    """The JPEG at (or read from) ``path``, cropped around ``box`` (relative x, y, w, h), ``height`` rows.

    Raises:
        HTTPException: 404 when the file is not a readable image.
    """
    try:
        with Image.open(path) as src:
            image = src.convert("RGB")
    except OSError:
        log.warning("snapshot %s is not a readable image", getattr(path, "name", "(from its node)"))
        raise HTTPException(404, "the snapshot is not readable") from None
    if crop and box is not None:
        w, h = image.size
        cx, cy = (box[0] + box[2] / 2) * w, (box[1] + box[3] / 2) * h
        side = max(box[2] * w, box[3] * h) * 1.2 + 8  # a square with a margin, like Frigate's crops
        left, top = max(0.0, cx - side / 2), max(0.0, cy - side / 2)
        right, bottom = min(float(w), cx + side / 2), min(float(h), cy + side / 2)
        if right - left >= 2 and bottom - top >= 2:
            image = image.crop((round(left), round(top), round(right), round(bottom)))
    if height is not None and height != image.height:
        width = max(1, round(image.width * height / image.height))
        image = image.resize((width, height))
    return encode_jpeg(image, quality)


def _event_box(ctx: ApiContext, event: EventRecord) -> list[float] | None:
    """The event's box relative to its frame (so it fits the snapshot at any scale); None: unknown."""
    return shapes.relative_box(event.data.get("box"), _frame_size(ctx, ctx.node.current_config(), event))


Height = Annotated[int | None, Query(ge=1, le=2160, description="scale to this many rows")]
Quality = Annotated[int, Query(ge=1, le=95)]


@reads.get("/events/{event_id}/snapshot.jpg", response_class=Response)
def snapshot(event_id: EventId, ctx: Ctx, h: Height = None, crop: Flag = None, quality: Quality = 85,
             bbox: Flag = None, timestamp: Flag = None) -> Response:
    """The event's snapshot (its best frame); ``crop=1`` crops to the object, ``h`` scales.

    ``bbox``/``timestamp`` are accepted and ignored: whether the box is drawn is
    the snapshot element's ``boxes`` setting.
    """
    del bbox, timestamp
    found = find_event(ctx.store, event_id)
    path = _snapshot_path(ctx, found)
    if not crop and h is None:
        return file_response(path, "image/jpeg")
    box = _event_box(ctx, found) if crop else None
    body = _jpeg(path, box, crop=bool(crop), height=h, quality=quality)
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@reads.get("/events/{event_id}/thumbnail.jpg", response_class=Response)
def thumbnail(event_id: EventId, ctx: Ctx, quality: Quality = 70) -> Response:
    """A small picture of the event's object: its snapshot cropped to the object, 175 rows high."""
    found = find_event(ctx.store, event_id)
    path = _snapshot_path(ctx, found)
    body = _jpeg(path, _event_box(ctx, found), crop=True, height=THUMBNAIL_HEIGHT, quality=quality)
    return Response(body, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"})


@reads.get("/events/{event_id}/clip.mp4", response_class=FileResponse)
def clip(event_id: EventId, ctx: Ctx, principal: Caller) -> FileResponse:
    """The event's clip from the recordings (camfleet's export: whole segments, HTTP Range, cached)."""
    return clip_of_event(ctx, find_event(ctx.store, event_id), principal.name)


# ----------------------------------------------------------------------------- live


@reads.get("/{camera}/latest.jpg", response_class=Response)
async def latest(camera: CameraName, ctx: Ctx, h: Height = None, quality: Quality = 70) -> Response:
    """The camera's newest frame (404: unknown or disabled camera; 503: no frame yet)."""
    cam = ctx.node.current_config().cameras.get(camera)
    if cam is None or not cam.enabled:
        raise HTTPException(404, "no such camera (or it is disabled)")
    try:
        jpeg, _ = await ctx.live.jpeg_async(camera, 2.0)
    except NoFrame as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
    if h is not None:
        jpeg = await asyncio.to_thread(_scaled, jpeg, h, quality)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _scaled(jpeg: bytes, height: int, quality: int) -> bytes:
    with Image.open(io.BytesIO(jpeg)) as src:
        image = src.convert("RGB")
    if height != image.height:
        image = image.resize((max(1, round(image.width * height / image.height)), height))
    return encode_jpeg(image, quality)
