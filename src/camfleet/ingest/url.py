"""Camera URLs: what kind of source a URL names, and masking its credentials.

Every URL that reaches a log line, an error or an API response goes through
:func:`mask_url` first; :func:`mask_text` scrubs URLs embedded in free text
(FFmpeg's own messages quote the URL they failed on, password included).
"""

from __future__ import annotations

import enum
import re
from urllib.parse import urlsplit, urlunsplit


class SourceKind(enum.Enum):
    """The kinds of camera source camfleet opens."""

    RTSP = "rtsp"
    HTTP = "http"
    FILE = "file"
    V4L2 = "v4l2"
    SYNTHETIC = "synthetic"


_URL_IN_TEXT = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@\s'\"]+)@")


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


def mask_url(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``.

    >>> mask_url("rtsp://admin:secret@10.0.0.5:554/stream1")
    'rtsp://***:***@10.0.0.5:554/stream1'
    """
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return mask_text(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # a malformed port or host: keep only what follows the last '@'
        scheme, sep, rest = url.partition("://")
        netloc, slash, path = rest.partition("/")
        if "@" not in netloc:
            return mask_text(url)
        return f"{scheme}{sep}***:***@{netloc.rpartition('@')[2]}{slash}{path}"
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    cred = "***:***" if parts.password is not None else "***"
    return urlunsplit((parts.scheme, f"{cred}@{host}", parts.path, parts.query, parts.fragment))


def mask_text(text: str) -> str:
    """``text`` with the credentials of every ``scheme://user:pass@`` in it masked."""
    return _URL_IN_TEXT.sub(lambda m: f"{m.group(1)}***:***@", text)


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without credentials, user, password)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None, None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, parts.username, parts.password
