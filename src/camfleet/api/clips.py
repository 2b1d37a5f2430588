"""Clips remuxed from the recording segments (``camfleet.recording.export``), served with HTTP Range.

A clip request is a GET that writes to disk, so anyone who may read (a
viewer, or a cross-site ``<img>`` in open mode) could otherwise fill the disk
with one export per distinct span. What bounds it:

* **Spans are aligned to segment boundaries**: a clip always covers whole
  segments, from the first one overlapping ``start`` to the last one
  overlapping ``end``, and is cached under the ids of those two segments. Any
  two requests inside the same segments share one file, and a span still
  being recorded gets a new name once a newer segment is indexed (no stale
  cache, nothing to expire). ``X-Clip-Start``/``X-Clip-End`` give the
  aligned span (epoch s).
* **The cache is capped in bytes** (``api.clip_cache_mb``), least recently
  used evicted first (:mod:`camfleet.recording.clip_cache`).
* **Clips never push recordings out**: an export that would take the
  recordings' disk below ``storage.min_free_mb`` first evicts clips, and is
  refused (507) if that is not enough; retention's floor deletes clips before
  segments.
* **Concurrent exports per token** are capped (``api.max_exports_per_token``,
  429 beyond); a clip already cached is served without taking a slot.
* The per-clip locks live only while a clip is being made or waited for.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import FileResponse

from camfleet.recording.clip_cache import ClipCache, evict_until
from camfleet.recording.export import ExportError, export_clip
from camfleet.recording.retention import disk_free_bytes
from camfleet.store import EventRecord, SegmentRecord

from .context import ApiContext
from .files import file_response, safe_file
from .limits import KeyedLocks, TooMany

log = logging.getLogger("camfleet.api")

MAX_CLIP_SECONDS = 3600.0
DEFAULT_PRE_POST_S = 5.0
MIB = 2**20
_locks = KeyedLocks()


def _no_footage(camera: str, start: float, end: float) -> HTTPException:
    log.info("clip of %s: no footage between %.3f and %.3f", camera, start, end)
    return HTTPException(404, "no recording covers that span")


def _same_disk(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` (or their nearest existing parents) are on one filesystem."""
    def dev(p: Path) -> int | None:
        while not p.exists() and p != p.parent:
            p = p.parent
        try:
            return os.stat(p).st_dev
        except OSError:
            return None
    da, db = dev(a), dev(b)
    return da is None or db is None or da == db


def _ensure_room(ctx: ApiContext, cache: ClipCache, estimate: int) -> None:
    """Make room for ``estimate`` bytes: under the cache's cap, and above the storage floor (507)."""
    if estimate > cache.max_bytes:
        raise HTTPException(413, f"that clip (about {estimate // MIB} MiB) is larger than the clip cache "
                                 f"(api.clip_cache_mb = {cache.max_bytes // MIB}); ask for a shorter span")
    cache.make_room(estimate)
    if not _same_disk(cache.folder, ctx.recordings_dir):
        return  # clips elsewhere cannot take the recordings' space
    floor = int(ctx.node.current_config().storage.min_free_mb * MIB)

    def fits() -> bool:
        return disk_free_bytes(ctx.recordings_dir) - estimate >= floor

    if not fits():
        evict_until(cache.folder, fits)
        if not fits():
            raise HTTPException(507, "the recordings' disk is at its storage floor (storage.min_free_mb): "
                                     "no clip is exported, so that no recording is deleted for one")


def _serve(path: Path, segs: list[SegmentRecord]) -> FileResponse:
    response = file_response(safe_file(path.parent, path.name), "video/mp4")
    response.headers["X-Clip-Start"] = f"{segs[0].start:.3f}"
    response.headers["X-Clip-End"] = f"{segs[-1].end:.3f}"
    return response


def _clip(ctx: ApiContext, who: str, camera: str, segs: list[SegmentRecord]) -> FileResponse:
    """The clip of exactly ``segs`` (consecutive segments of ``camera``), exported once and cached."""
    cache = ClipCache(ctx.clips_dir, int(ctx.settings.clip_cache_mb * MIB))
    # ids and times: a row id reused after the index was rebuilt never names another clip's footage
    first, last = segs[0], segs[-1]
    span_ms = f"{round(first.start * 1000)}-{round(last.end * 1000)}"
    path = cache.path(f"{camera}-{first.id}-{last.id}-{span_ms}.mp4")
    if path.is_file():  # renamed into place whole: a file there is complete
        cache.touch(path)
        return _serve(path, segs)
    try:
        ctx.export_slots.acquire(who)
    except TooMany:
        raise HTTPException(429, f"this token already runs {ctx.export_slots.limit} clip exports "
                                 "(api.max_exports_per_token); retry when one is done",
                            headers={"Retry-After": "5"}) from None
    try:
        with _locks.hold(path.name):
            if not path.is_file():
                cache.folder.mkdir(parents=True, exist_ok=True)
                _ensure_room(ctx, cache, sum(s.size for s in segs))
                try:
                    export_clip(ctx.store, ctx.recordings_dir, camera, segs[0].start, segs[-1].end, path)
                except ExportError as exc:
                    log.info("clip %s: %s", path.name, exc)
                    raise HTTPException(404, "no recording covers that span") from None
                cache.make_room(keep=[path])  # the estimate was short: others go, this one is served
            else:
                cache.touch(path)
    finally:
        ctx.export_slots.release(who)
    return _serve(path, segs)


def span_clip(ctx: ApiContext, who: str, camera: str, start: float, end: float) -> FileResponse:
    """``camera``'s footage from ``start`` to ``end`` (epoch s, at most an hour), widened to whole segments.

    ``who`` is the caller's token name (exports per token are capped).
    """
    if not end > start or end - start > MAX_CLIP_SECONDS:
        raise HTTPException(422, f"a clip spans more than 0 and at most {MAX_CLIP_SECONDS:.0f} seconds")
    segs = ctx.store.query_segments(camera=camera, start=start, end=end)
    if not segs:
        raise _no_footage(camera, start, end)
    return _clip(ctx, who, camera, segs)


def event_span(ctx: ApiContext, event: EventRecord) -> tuple[float, float]:
    """The span (epoch s) an event's clip covers: with the camera's pre/post capture, at most an hour.

    A running event's span reaches an hour past its start (its newest footage is what exists).
    """
    cam = ctx.node.current_config().cameras.get(event.camera)
    pre = cam.record.pre_capture if cam is not None else DEFAULT_PRE_POST_S
    post = cam.record.post_capture if cam is not None else DEFAULT_PRE_POST_S
    start = event.start - pre
    end = start + MAX_CLIP_SECONDS if event.end is None else min(event.end + post, start + MAX_CLIP_SECONDS)
    return start, end


def clip_of_event(ctx: ApiContext, event: EventRecord, who: str = "") -> FileResponse:
    """The event's footage with the camera's pre/post capture (at most an hour), as whole segments.

    A running event is exported up to its newest footage.
    """
    start, end = event_span(ctx, event)
    segs = ctx.store.query_segments(camera=event.camera, start=start, end=end)
    if not segs:
        raise _no_footage(event.camera, start, end)
    return _clip(ctx, who or "?", event.camera, segs)
