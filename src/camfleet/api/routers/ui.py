"""The web UI: static files shipped inside the package (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

router = APIRouter(include_in_schema=False)


@router.get("/")
def index() -> FileResponse:
    """The single page of the UI."""
    return FileResponse(UI_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


@router.get("/ui")
def ui_redirect() -> RedirectResponse:
    """``/ui`` is the same page as ``/``."""
    return RedirectResponse("/")


def static_files() -> StaticFiles:
    """The UI's scripts and styles, mounted at ``/ui/``."""
    return StaticFiles(directory=UI_DIR, follow_symlink=False)
