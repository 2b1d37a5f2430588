"""Clips remuxed from the recording segments (``camfleet.recording.export``), served with HTTP Range.

Clips are exported once and cached under ``<data_dir>/clips`` (files unused
for an hour are pruned). A span that is still being recorded (a running
event, a span ending in the last seconds) is cached for 10 s only, so a
player's successive Range requests see the same file while it still grows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import FileResponse

from camfleet.recording.export import ExportError, event_clip, export_clip
from camfleet.store import EventRecord

from .context import ApiContext
from .files import file_response, safe_file

log = logging.getLogger("camfleet.api")

MAX_CLIP_SECONDS = 3600.0
CACHE_KEEP_S = 3600.0
DEFAULT_PRE_POST_S = 5.0
GROWING_CACHE_S = 10
_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def _lock(name: str) -> threading.Lock:
    with _guard:
        return _locks.setdefault(name, threading.Lock())


def _prune(folder: Path) -> None:
    cutoff = time.time() - CACHE_KEEP_S
    for path in folder.glob("*.mp4"):
        try:
            if path.stat().st_atime < cutoff:
                path.unlink()
        except OSError:
            continue


def _not_found(exc: Exception, what: str) -> HTTPException:
    log.info("clip %s: %s", what, exc)
    return HTTPException(404, "no recording covers that span")


def _export(ctx: ApiContext, name: str, make: Callable[[Path], object]) -> FileResponse:
    folder = ctx.clips_dir
    folder.mkdir(parents=True, exist_ok=True)
    with _lock(name):
        if not (folder / name).is_file():
            _prune(folder)
            try:
                make(folder / name)
            except ExportError as exc:
                raise _not_found(exc, name) from None
    return file_response(safe_file(folder, name), "video/mp4")


def _settle_s(ctx: ApiContext, camera: str) -> float:
    """Seconds after which footage of a moment is in closed segments (a segment's length, and slack)."""
    cam = ctx.node.current_config().cameras.get(camera)
    return (cam.record.segment_seconds if cam is not None else 10.0) + 2.0


def _growing_suffix(finished: bool) -> str:
    return "" if finished else f"-live{int(time.time() // GROWING_CACHE_S)}"


def span_clip(ctx: ApiContext, camera: str, start: float, end: float) -> FileResponse:
    """``camera``'s footage from ``start`` to ``end`` (epoch seconds, at most an hour) as MP4."""
    if not end > start or end - start > MAX_CLIP_SECONDS:
        raise HTTPException(422, f"a clip spans more than 0 and at most {MAX_CLIP_SECONDS:.0f} seconds")
    finished = end + _settle_s(ctx, camera) < time.time()

    def make(out: Path) -> object:
        return export_clip(ctx.store, ctx.recordings_dir, camera, start, end, out)

    return _export(ctx, f"{camera}-{start:.3f}-{end:.3f}{_growing_suffix(finished)}.mp4", make)


def clip_of_event(ctx: ApiContext, event: EventRecord) -> FileResponse:
    """The event's footage with the camera's pre/post capture, as MP4."""
    cam = ctx.node.current_config().cameras.get(event.camera)
    pre = cam.record.pre_capture if cam is not None else DEFAULT_PRE_POST_S
    post = cam.record.post_capture if cam is not None else DEFAULT_PRE_POST_S

    def make(out: Path) -> object:
        return event_clip(ctx.store, ctx.recordings_dir, event.id, out, pre=pre, post=post)

    finished = event.end is not None and event.end + post + _settle_s(ctx, event.camera) < time.time()
    name = f"event-{event.id}-{pre:g}-{post:g}{_growing_suffix(finished)}.mp4"
    return _export(ctx, name, make)
