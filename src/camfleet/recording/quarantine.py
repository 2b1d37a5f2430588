"""The quarantine folder: ``<recordings_dir>/.quarantine/``, where footage goes instead of being deleted.

A file camfleet cannot index or recover (an unplayable ``.mp4`` in its own
layout, a ``.part`` with nothing readable) may still hold something a person
wants, so it is moved here, keeping its relative path, and never deleted by
camfleet. The folder name starts with a dot, which no camera name can
(:func:`~camfleet.recording.paths.check_camera`), so no camera, index row or
API path ever reaches it; ``camfleet storage check`` counts what it holds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .paths import fsync_dir

log = logging.getLogger("camfleet.recording")

QUARANTINE_DIR = ".quarantine"


@dataclass(frozen=True)
class QuarantineUsage:
    """What the quarantine folder holds: ``files`` (count) and ``bytes`` (total size)."""

    files: int
    bytes: int


def quarantine_dir(recordings_dir: Path) -> Path:
    """``<recordings_dir>/.quarantine``."""
    return Path(recordings_dir) / QUARANTINE_DIR


def is_quarantined(recordings_dir: Path, path: Path) -> bool:
    """True if ``path`` lies inside the quarantine folder of ``recordings_dir``."""
    try:
        Path(path).relative_to(quarantine_dir(recordings_dir))
    except ValueError:
        return False
    return True


def quarantine(recordings_dir: Path, path: Path, reason: str) -> Path:
    """Move ``path`` (inside ``recordings_dir``) into the quarantine folder; returns its new path.

    The relative path is kept; an existing file of that name is never
    replaced (a numeric suffix is added). The move is a rename on the same
    filesystem, so it needs no free space and cannot lose the file.
    """
    root = Path(recordings_dir)
    rel = Path(path).relative_to(root)
    target = quarantine_dir(root) / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = target, 0
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}.{n}")
    os.rename(path, candidate)
    fsync_dir(candidate.parent)
    log.warning("recordings: moved %s to %s (%s); camfleet never deletes it", rel.as_posix(),
                candidate.relative_to(root).as_posix(), reason)
    return candidate


def quarantine_usage(recordings_dir: Path) -> QuarantineUsage:
    """Count the files in the quarantine folder of ``recordings_dir`` and their bytes."""
    files = size = 0
    qdir = quarantine_dir(recordings_dir)
    if qdir.is_dir():
        for p in qdir.rglob("*"):
            if p.is_file() and not p.is_symlink():
                files += 1
                size += p.stat().st_size
    return QuarantineUsage(files, size)
