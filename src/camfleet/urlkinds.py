"""Which kind of camera source a URL names: a leaf module, so ``config`` validates URLs without ``ingest``."""

from __future__ import annotations

import enum
from urllib.parse import urlsplit

from camfleet.redact import mask_url

__all__ = ["SourceKind", "source_kind"]


class SourceKind(enum.Enum):
    """The kinds of camera source camfleet opens."""

    RTSP = "rtsp"
    HTTP = "http"
    FILE = "file"
    V4L2 = "v4l2"
    SYNTHETIC = "synthetic"


def source_kind(url: str) -> SourceKind:
    """Classify ``url``; raises ValueError (with the URL masked) for unknown schemes."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        return SourceKind.RTSP
    if scheme in ("http", "https"):
        return SourceKind.HTTP
    if scheme == "synthetic":
        return SourceKind.SYNTHETIC
    if scheme == "v4l2" or url.startswith("/dev/video"):
        return SourceKind.V4L2
    if scheme in ("", "file"):
        return SourceKind.FILE
    raise ValueError(
        f"unsupported camera URL {mask_url(url)!r}: use rtsp://, rtsps://, http(s)://, "
        "a file path, /dev/videoN or synthetic://"
    )
