"""Where segments live: ``<recordings_dir>/<camera>/<YYYY-MM-DD>/<HH>/<start-epoch-ms>.mp4``.

Dates and hours are UTC. Every path that comes from a database row, a user or
an API is resolved with :func:`safe_join`, which refuses anything that would
leave the recordings directory.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path, PurePosixPath

SEGMENT_SUFFIX = ".mp4"
PART_SUFFIX = ".mp4.part"
_CAMERA = re.compile(r"[A-Za-z0-9_-]{1,63}")
_NAME = re.compile(r"(\d{1,16})\.mp4")


class UnsafePath(ValueError):
    """A path would escape the directory it must stay in."""


def check_camera(camera: str) -> str:
    """Return ``camera`` if it is a valid camera name (it becomes a directory), else raise ValueError."""
    if not _CAMERA.fullmatch(camera):
        raise ValueError(f"invalid camera name {camera!r}: use 1-63 letters, digits, '_' or '-'")
    return camera


def segment_relpath(camera: str, start: float) -> str:
    """The relative (POSIX) path of a segment of ``camera`` starting at ``start`` (epoch seconds)."""
    check_camera(camera)
    t = time.gmtime(start)
    ms = round(start * 1000)
    return f"{camera}/{time.strftime('%Y-%m-%d', t)}/{time.strftime('%H', t)}/{ms}{SEGMENT_SUFFIX}"


def start_from_name(path: Path | str) -> float | None:
    """The start time (epoch seconds) encoded in a segment's file name, or None."""
    name = PurePosixPath(str(path)).name
    if name.endswith(".part"):
        name = name[: -len(".part")]
    m = _NAME.fullmatch(name)
    return int(m.group(1)) / 1000 if m else None


def parse_segment_relpath(relative: str) -> tuple[str, float] | None:
    """(camera, start epoch s) if ``relative`` is exactly camfleet's own segment layout, else None.

    Own layout means :func:`segment_relpath` of that camera and start gives
    back the same path: a valid camera name, then the UTC date and hour of
    the start, then ``<start-ms>.mp4``. Anything else under the recordings
    directory was put there by someone else.
    """
    parts = PurePosixPath(relative).parts
    if len(parts) != 4 or not _CAMERA.fullmatch(parts[0]):
        return None
    start = start_from_name(parts[3])
    if start is None or not parts[3].endswith(SEGMENT_SUFFIX):
        return None
    try:
        own = segment_relpath(parts[0], start)
    except (ValueError, OverflowError, OSError):  # a start too large for gmtime
        return None
    return (parts[0], start) if own == relative else None


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths, ``..`` and symlinks that lead outside ``root``."""
    rel = PurePosixPath(relative)
    if not relative or rel.is_absolute() or ".." in rel.parts or "\x00" in relative:
        raise UnsafePath(f"path {relative!r} must be relative and stay inside {root}")
    base = root.resolve()
    full = (base / rel).resolve()
    if full != base and base not in full.parents:
        raise UnsafePath(f"path {relative!r} leads outside {root}")
    return full


def relpath(root: Path, path: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (both resolved)."""
    return path.resolve().relative_to(root.resolve()).as_posix()


def fsync_dir(path: Path) -> None:
    """Flush a directory (fsync)  so a rename or unlink in it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_replace(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` (fsync), rename it to ``final`` and fsync the directory."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    fsync_dir(final.parent)
