"""Serving files from a fixed directory only: no traversal, no symlinks leading out, HTTP Range."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import HTTPException
from starlette.responses import FileResponse

_PART_RE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


def safe_file(base: Path, relative: str | Path) -> Path:
    """The regular file at ``base/relative``, resolved, if it lies inside ``base``; else 404.

    Absolute paths, ``..``, odd characters, and symlinks that resolve outside
    ``base`` are all refused the same way (404, no detail that would help probing).
    """
    rel = Path(relative)
    parts = rel.parts
    if rel.is_absolute() or not parts or any(p in {".", ".."} or not _PART_RE.match(p) for p in parts):
        raise HTTPException(404, "not found")
    try:
        root = base.resolve(strict=True)
        path = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        raise HTTPException(404, "not found") from None
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "not found")
    return path


def file_response(path: Path, media_type: str, filename: str | None = None) -> FileResponse:
    """``path`` as a response that honours ``Range`` (206/416) and says ``Accept-Ranges: bytes``."""
    headers = {"Cache-Control": "private, max-age=60"}
    return FileResponse(path, media_type=media_type, filename=filename, headers=headers,
                        content_disposition_type="inline")
