"""Clips cut from the recording segments (``camfleet.recording.export``), cached in ``<data_dir>/clips``."""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import FileResponse

from camfleet.store import EventRecord

from .context import ApiContext
from .files import file_response, safe_file

log = logging.getLogger("camfleet.api")

MAX_CLIP_SECONDS = 3600.0
_PRE_POST_S = 5.0
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _exporter() -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("camfleet.recording.export")
    except ImportError:
        return None
    fn = getattr(module, "export_clip", None)
    return fn if callable(fn) else None


def _lock(name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(name, threading.Lock())


def clip_file(ctx: ApiContext, camera: str, start: float, end: float) -> Path:
    """The clip of ``camera`` from ``start`` to ``end`` (epoch seconds), exported once and cached.

    Raises:
        HTTPException: 404 when there is no footage for the span, or clip export is not available.
    """
    if not end > start or end - start > MAX_CLIP_SECONDS:
        raise HTTPException(422, f"a clip spans more than 0 and at most {MAX_CLIP_SECONDS:.0f} seconds")
    export = _exporter()
    if export is None:
        raise HTTPException(404, "clip export is not available in this build")
    name = f"{camera}-{start:.3f}-{end:.3f}.mp4"
    ctx.clips_dir.mkdir(parents=True, exist_ok=True)
    out = ctx.clips_dir / name
    with _lock(name):
        if not out.is_file():
            tmp = ctx.clips_dir / f".{name}.part"
            try:
                export(ctx.store, ctx.recordings_dir, camera, start, end, tmp)
            except (LookupError, ValueError, FileNotFoundError) as exc:
                tmp.unlink(missing_ok=True)
                log.info("clip %s: %s", name, exc)
                raise HTTPException(404, "no recording covers that span") from None
            if not tmp.is_file():
                raise HTTPException(404, "no recording covers that span")
            tmp.replace(out)
    return safe_file(ctx.clips_dir, name)


def clip_response(ctx: ApiContext, *, event: EventRecord | None = None, camera: str | None = None,
                  start: float | None = None, end: float | None = None) -> FileResponse:
    """An event's clip (with pre/post capture) or a span's, as an MP4 file response with Range support."""
    if event is not None:
        camera = event.camera
        start = event.start - _PRE_POST_S
        end = (event.end if event.end is not None else event.start) + _PRE_POST_S
    assert camera is not None and start is not None and end is not None
    return file_response(clip_file(ctx, camera, start, end), "video/mp4")
