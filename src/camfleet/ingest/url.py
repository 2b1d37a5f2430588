"""Camera URLs as ingest sees them: their credentials taken apart.

The kind of a URL (:mod:`camfleet.urlkinds`) and the masking of credentials
(:mod:`camfleet.redact`) live in leaf modules that any layer may import.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["split_credentials"]


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
