"""The web UI: static files shipped inside the package (no CDN, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

router = APIRouter(include_in_schema=False)
SECURITY_HEADERS = {
    "Cache-Control": "no-cache",
    # everything from this server only: no inline script, no third party, no framing
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@router.get("/")
def index() -> FileResponse:
    """The single page of the UI."""
    return FileResponse(UI_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


@router.get("/ui")
def ui_redirect() -> RedirectResponse:
    """``/ui`` is the same page as ``/``."""
    return RedirectResponse("/")


def static_files() -> StaticFiles:
    """The UI's scripts and styles, mounted at ``/ui/``."""
    return StaticFiles(directory=UI_DIR, follow_symlink=False)
