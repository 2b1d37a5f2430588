"""Frigate's HTTP API under ``/frigate/api`` on the coordinator, for every camera of the fleet.

The paths, shapes and authentication are the node's
(:mod:`camfleet.api.routers.frigate_compat`); the switch is ``compat: {frigate: true}``
in the coordinators' base configuration. Home Assistant's Frigate integration
pointed at a coordinator sees one Frigate with every camera. Login sessions are
signed with a key derived from the fleet's key, so a session from one coordinator
is valid on all of them (and a revoked token ends it everywhere). Events come
from the fleet database; snapshots, thumbnails, clips and latest frames are
fetched from the node that holds them (signed, as :mod:`camfleet.api.fleet.media`
does) and cropped or scaled here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from PIL import Image
from sqlalchemy import select

from camfleet.cluster.fleetconfig import default_base
from camfleet.config import Config
from camfleet.fleetstore.events import events_table, records_table
from camfleet.fleetstore.flags import flags_of
from camfleet.fleetstore.store import FleetStore
from camfleet.store import Store
from camfleet.vocabulary import Event

from .. import frigate_shapes as shapes
from ..clips import event_span
from ..context import ApiContext
from ..frigate_session import Sessions
from ..routers import frigate_compat as node_compat
from ..routers.common import CameraName, EventId
from .context import Fleet, FleetContext
from .media import camera_node, proxy_of

__all__ = ["FleetSessions", "reads"]

reads = APIRouter(prefix=node_compat.PREFIX, tags=["frigate"], include_in_schema=False,
                  dependencies=[Depends(node_compat._enabled), Depends(node_compat.compat_auth)])
# the node's own handlers where they read only the configuration (the fleet's, through ctx.node)
reads.get("/version", response_class=PlainTextResponse)(node_compat.version)
reads.get("/config")(node_compat.frigate_config)

_SESSION_CONTEXT = b"camfleet frigate-compat session v1"
Filter = node_compat.Filter
Flag = node_compat.Flag
Height = node_compat.Height
Quality = node_compat.Quality
Epoch = Annotated[float | None, Query(ge=0, le=1e11)]


def enabled(ctx: Fleet) -> None:
    """404 unless the coordinators' base configuration has ``compat.frigate: true``.

    It replaces the node's switch (``app.dependency_overrides``), which would build the whole
    fleet's configuration just to read one flag of its base.
    """
    compat = getattr(ctx.base or default_base(), "compat", None)
    if compat is None or not compat.frigate:
        raise HTTPException(404, "Not Found")


class FleetSessions(Sessions):
    """The node's Frigate sessions, signed with a key every coordinator derives from the fleet's key."""

    def __init__(self, store: FleetStore, fleet_key: Callable[[], bytes | None]) -> None:
        super().__init__(Path("."), cast(Store, store))  # tokens: the fleet's (verify_token, list_tokens)
        self._fleet_key = fleet_key

    def _load_key(self) -> bytes:
        key = self._fleet_key()
        if key is None:
            raise OSError("the fleet's key has not been read from NATS yet")
        return hmac.new(key, _SESSION_CONTEXT, hashlib.sha256).digest()


@reads.get("/stats")
async def frigate_stats(ctx: Fleet) -> dict[str, Any]:
    """Frigate's stats for the fleet: every camera's rates and state, every node's detectors, uptime.

    No disk usage: recordings live on the nodes (``/api/storage`` sums them).
    """
    status = await asyncio.to_thread(ctx.status.get)
    config = await asyncio.to_thread(ctx.node.current_config)
    return shapes.stats_shape(status, config.cameras, {}, node_compat._mem_total_mb(), time.time())


def _frame(config: Config, camera: str) -> tuple[int, int] | None:
    cam = config.cameras.get(camera)
    if cam is not None and cam.detect.width and cam.detect.height:
        return cam.detect.width, cam.detect.height
    return None


def _load(body: str) -> Event | None:
    try:
        return Event.from_json(json.loads(body))
    except (ValueError, KeyError, TypeError):
        return None


def _with_marks(ctx: FleetContext, events: list[Event]) -> list[Event]:
    marks = flags_of(ctx.store.engine, [e.id for e in events])
    for event in events:
        mark = marks.get(event.id)
        if mark is not None and mark.retained is not None:
            event.retained = mark.retained
    return events


def _has_clip(ctx: FleetContext, event: Event) -> bool:
    """Whether a node reported recordings covering the event's clip span (blocking)."""
    start, end = event_span(cast(ApiContext, ctx), event)  # reads ctx.node only
    t = records_table
    q = select(t.c.key).where(t.c.kind == "segment", t.c.camera == event.camera, t.c.start < end,
                              t.c.end > start).limit(1)
    with ctx.store.engine.connect() as conn:
        return conn.execute(q).first() is not None


def _find(ctx: FleetContext, event_id: str) -> tuple[Event, str]:
    """The event ``event_id`` and its node (404: none; blocking)."""
    t = events_table
    with ctx.store.engine.connect() as conn:
        row = conn.execute(select(t.c.node, t.c.body).where(t.c.id == event_id)).first()
    event = _load(row.body) if row is not None else None
    if row is None or event is None:
        raise HTTPException(404, "no such event")
    return _with_marks(ctx, [event])[0], str(row.node)


def _search(ctx: FleetContext, filt: shapes.EventFilter, after: float | None, before: float | None,
            want: int, has_clip: int | None) -> list[dict[str, Any]]:
    """Frigate's ``/events`` over the fleet database (blocking; at most ``SCAN_LIMIT`` rows looked at)."""
    config = ctx.node.current_config()
    t = events_table
    q = select(t.c.body).order_by(t.c.start.desc(), t.c.id.desc())
    for col, value in ((t.c.camera, filt.single(filt.cameras)), (t.c.label, filt.single(filt.labels))):
        if value is not None:
            q = q.where(col == value)
    if after is not None:
        q = q.where(t.c.start > after)  # exclusive in Frigate
    if before is not None:
        q = q.where(t.c.start < before)
    out: list[dict[str, Any]] = []
    offset = 0
    while len(out) < want and offset < node_compat.SCAN_LIMIT:
        with ctx.store.engine.connect() as conn:
            rows = list(conn.execute(q.limit(node_compat._SCAN_BATCH).offset(offset)))
        offset += len(rows)
        events = _with_marks(ctx, [e for r in rows if (e := _load(r.body)) is not None])
        for event in events:
            if not filt.matches(event):
                continue
            clip = _has_clip(ctx, event)
            if has_clip is not None and clip != bool(has_clip):
                continue
            out.append(shapes.event_shape(event, has_clip=clip, frame=_frame(config, event.camera)))
            if len(out) >= want:
                break
        if len(rows) < node_compat._SCAN_BATCH:
            break
    return out


@reads.get("/events")
async def events(
    ctx: Fleet,
    camera: Filter = None, cameras: Filter = None, label: Filter = None, labels: Filter = None,
    zone: Filter = None, zones: Filter = None, sub_label: Filter = None, sub_labels: Filter = None,
    after: Epoch = None, before: Epoch = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 100,
    has_clip: Flag = None, has_snapshot: Flag = None, in_progress: Flag = None, favorites: Flag = None,
    include_thumbnails: Flag = None,
) -> list[dict[str, Any]]:
    """Every node's events newest first, with Frigate's filters (as on a node; at most 500)."""
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
    return await asyncio.to_thread(_search, ctx, filt, after, before, min(limit, node_compat.MAX_EVENTS),
                                   has_clip)


@reads.get("/events/{event_id}")
async def event(event_id: EventId, ctx: Fleet) -> dict[str, Any]:
    """One event in Frigate's shape (404: none)."""
    def shape() -> dict[str, Any]:
        found, _node = _find(ctx, event_id)
        frame = _frame(ctx.node.current_config(), found.camera)
        return shapes.event_shape(found, has_clip=_has_clip(ctx, found), frame=frame)
    return await asyncio.to_thread(shape)


async def _fetch(request: Request, node: str, path: str, what: str) -> bytes:
    """The body of a small signed GET to ``node`` (its 404/503 passed on, saying ``what``)."""
    resp = await proxy_of(request).call(node, "GET", path, timeout_s=10.0)
    if resp.status_code != 200:
        raise HTTPException(resp.status_code if resp.status_code in (404, 503) else 502,
                            f"{what}: node {node} answered {resp.status_code}")
    return resp.content


def _picture(ctx: FleetContext, event: Event, jpeg: bytes, *, crop: bool, height: int | None,
             quality: int) -> bytes:
    """The snapshot cropped to the event's object and scaled, as a node makes it (blocking)."""
    config = ctx.node.current_config()
    frame = _frame(config, event.camera)
    cam = config.cameras.get(event.camera)
    spec = next((s for s in config.pipelines.get(cam.pipeline, []) if s.name == "snapshot"), None) \
        if cam is not None else None
    if frame is None and spec is not None and not spec.params.get("height"):
        try:  # an unscaled snapshot is the frame: its size is the frame's
            with Image.open(io.BytesIO(jpeg)) as im:
                frame = im.size
        except OSError:
            frame = None
    box = shapes.relative_box(event.data.get("box"), frame) if crop else None
    return node_compat._jpeg(io.BytesIO(jpeg), box, crop=crop, height=height, quality=quality)


_CACHE = {"Cache-Control": "private, max-age=60"}


@reads.get("/events/{event_id}/snapshot.jpg", response_class=Response)
async def snapshot(event_id: EventId, request: Request, ctx: Fleet, h: Height = None, crop: Flag = None,
                   quality: Quality = 85, bbox: Flag = None, timestamp: Flag = None) -> Response:
    """The event's snapshot from its node; ``crop=1`` crops to the object, ``h`` scales (as on a node)."""
    del bbox, timestamp
    found, node = await asyncio.to_thread(_find, ctx, event_id)
    jpeg = await _fetch(request, node, f"/api/events/{quote(event_id, safe='')}/snapshot.jpg", "snapshot")
    if not crop and h is None:
        return Response(jpeg, media_type="image/jpeg", headers=_CACHE)
    body = await asyncio.to_thread(_picture, ctx, found, jpeg, crop=bool(crop), height=h, quality=quality)
    return Response(body, media_type="image/jpeg", headers=_CACHE)


@reads.get("/events/{event_id}/thumbnail.jpg", response_class=Response)
async def thumbnail(event_id: EventId, request: Request, ctx: Fleet, quality: Quality = 70) -> Response:
    """The event's object cropped from its snapshot, 175 rows high (the snapshot from its node)."""
    found, node = await asyncio.to_thread(_find, ctx, event_id)
    jpeg = await _fetch(request, node, f"/api/events/{quote(event_id, safe='')}/snapshot.jpg", "snapshot")
    body = await asyncio.to_thread(_picture, ctx, found, jpeg, crop=True, height=node_compat.THUMBNAIL_HEIGHT,
                                   quality=quality)
    return Response(body, media_type="image/jpeg", headers=_CACHE)


@reads.get("/events/{event_id}/clip.mp4", response_class=StreamingResponse)
async def clip(event_id: EventId, request: Request, ctx: Fleet) -> StreamingResponse:
    """The event's clip, exported and streamed by its node (HTTP Range honoured)."""
    _found, node = await asyncio.to_thread(_find, ctx, event_id)
    return await proxy_of(request).forward(request, node, f"/api/events/{quote(event_id, safe='')}/clip.mp4")


@reads.get("/{camera}/latest.jpg", response_class=Response)
async def latest(camera: CameraName, request: Request, ctx: Fleet, h: Height = None,
                 quality: Quality = 70) -> Response:
    """The camera's newest frame from its node (404: unknown or disabled camera; 503: none yet)."""
    cam = (await asyncio.to_thread(ctx.node.current_config)).cameras.get(camera)
    if cam is None or not cam.enabled:
        raise HTTPException(404, "no such camera (or it is disabled)")
    node = await camera_node(ctx, camera)
    jpeg = await _fetch(request, node, f"/api/cameras/{quote(camera, safe='')}/frame.jpg", "latest frame")
    if h is not None:
        jpeg = await asyncio.to_thread(node_compat._scaled, jpeg, h, quality)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
