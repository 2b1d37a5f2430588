"""The exported-clip cache: a folder of MP4 files bounded in bytes, least recently used evicted first.

Clips are copies of footage that stays in the recordings, so they are the
first thing to go: the cache evicts to stay under its byte cap, the API
evicts before an export would take the disk below the storage floor, and
retention's storage floor (:mod:`camfleet.recording.retention`) empties the
cache before it deletes a single segment.

"Used" is the file's modification time, set again on every hit
(:meth:`ClipCache.touch`): access times are not kept on ``noatime``/
``relatime`` mounts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("camfleet.recording")

STALE_PART_S = 3600.0  # a half-written export older than this was left by a crash


@dataclass(frozen=True)
class CachedClip:
    """One file of the cache: its path, size (bytes) and when it was last used (epoch s)."""

    path: Path
    size: int
    used: float


def cached_clips(folder: Path, now: float | None = None) -> list[CachedClip]:
    """The clips in ``folder`` (and crash leftovers), least recently used first; [] when it is missing."""
    now = time.time() if now is None else now
    found: list[CachedClip] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        is_clip = entry.name.endswith(".mp4") and not entry.name.startswith(".")
        is_stale_part = entry.name.endswith(".part") and now - st.st_mtime > STALE_PART_S
        if is_clip or is_stale_part:
            found.append(CachedClip(Path(entry.path), st.st_size, st.st_mtime))
    found.sort(key=lambda c: c.used)
    return found


def _remove(clip: CachedClip) -> bool:
    try:
        clip.path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("clip cache: cannot delete %s: %s", clip.path.name, exc)
        return False
    return True


class ClipCache:
    """The clips under ``folder``, kept to at most ``max_bytes`` in total."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def path(self, name: str) -> Path:
        """Where the clip called ``name`` lives (a plain file name, made by the caller)."""
        return self.folder / name

    @staticmethod
    def touch(path: Path) -> None:
        """Mark ``path`` as used now (it is evicted last)."""
        with contextlib.suppress(OSError):  # evicted meanwhile: the caller's response finds out
            os.utime(path)

    def total_bytes(self) -> int:
        """Bytes the cache holds now."""
        return sum(c.size for c in cached_clips(self.folder))

    def make_room(self, incoming: int = 0, keep: Iterable[Path] = ()) -> int:
        """Evict least recently used clips until ``incoming`` more bytes fit under the cap; bytes freed.

        Files in ``keep`` (a clip being served) are never evicted.
        """
        kept = {Path(p) for p in keep}
        clips = cached_clips(self.folder)
        total = sum(c.size for c in clips)
        freed = 0
        for clip in clips:
            if total + incoming <= self.max_bytes:
                break
            if clip.path in kept:
                continue
            if _remove(clip):
                total -= clip.size
                freed += clip.size
        return freed


def evict_until(folder: Path, enough: Callable[[], bool], keep: Iterable[Path] = ()) -> int:
    """Delete clips in ``folder``, least recently used first, until ``enough()``; bytes freed.

    Used by the storage floor: clips go before any recording does.
    """
    kept = {Path(p) for p in keep}
    freed = 0
    for clip in cached_clips(folder):
        if enough():
            break
        if clip.path not in kept and _remove(clip):
            freed += clip.size
            log.info("storage floor: deleted cached clip %s (%d bytes)", clip.path.name, clip.size)
    return freed
