"""``/api/docs``: Swagger UI served from this server's own files (works offline), behind auth.

The Swagger UI assets come from the ``swagger-ui-bundle-v2`` package (no CDN);
the page and the OpenAPI schema need a token like every other read (the web
UI's cookie works), except in open mode on loopback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from ..auth import authorize

ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
OWN = Path(__file__).resolve().parent.parent / "docs_ui"
# the only files served under /api/docs/assets/: name -> (folder, media type)
_FILES = {
    "swagger-ui.css": (ASSETS, "text/css"),
    "swagger-ui-bundle.js": (ASSETS, "text/javascript"),
    "favicon-32x32.png": (ASSETS, "image/png"),
    "init.js": (OWN, "text/javascript"),
}
_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>camfleet API</title>
  <link rel="stylesheet" href="/api/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/api/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/api/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/api/docs/assets/init.js"></script>
</body>
</html>
"""
HEADERS = {
    "Cache-Control": "no-cache",
    # this server's files only; Swagger UI sets inline styles and shows data: images
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; connect-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

public = APIRouter(include_in_schema=False)
router = APIRouter(include_in_schema=False, dependencies=[Depends(authorize)])


@router.get("/api/docs")
def docs_page() -> HTMLResponse:
    """The interactive API documentation (Swagger UI) of this server."""
    return HTMLResponse(_PAGE, headers=HEADERS)


@router.get("/api/openapi.json")
def openapi_schema(request: Request) -> JSONResponse:
    """The OpenAPI schema of this server."""
    schema: dict[str, Any] = request.app.openapi()
    return JSONResponse(schema)


@public.get("/api/docs/assets/{name}")
def docs_asset(name: str) -> FileResponse:
    """One of Swagger UI's static files (public: the same code for everyone, no data)."""
    entry = _FILES.get(name)
    if entry is None:
        raise HTTPException(404, "not found")
    folder, media = entry
    headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
    return FileResponse(folder / name, media_type=media, headers=headers)
