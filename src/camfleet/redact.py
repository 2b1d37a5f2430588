"""Redaction of credentials in URLs and free text: a leaf module any layer may import.

Every URL that reaches a log line, an error or an API response goes through
:func:`mask_url` first; :func:`mask_text` scrubs URLs embedded in free text
(FFmpeg's own messages quote the URL they failed on, password included). Both
hide the user name and password of ``scheme://user:pass@host`` and the values
of query parameters that carry credentials (:data:`SECRET_QUERY_KEYS`, e.g.
``?user=admin&password=x``, which many cameras' HTTP snapshot URLs use).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["MASK", "SECRET_QUERY_KEYS", "mask_query", "mask_text", "mask_url"]

MASK = "***"
"""What a hidden user name, password or secret parameter value reads as."""

SECRET_QUERY_KEYS = frozenset({"password", "pwd", "pass", "token", "key", "auth", "user", "username"})
"""Query parameter names (any case) whose values are credentials."""

_URL_IN_TEXT = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^/@\s'\"]+)@")
# A secret parameter wherever a query string shows it: after '?' or '&', up to the next separator.
_SECRET_PARAM = re.compile(
    r"([?&](?:" + "|".join(sorted(SECRET_QUERY_KEYS, key=len, reverse=True)) + r")=)[^&#\s'\"]*",
    re.IGNORECASE,
)


def mask_url(url: str) -> str:
    """``url`` with any user name, password and secret query parameter replaced by ``***``.

    >>> mask_url("rtsp://admin:secret@10.0.0.5:554/stream1")
    'rtsp://***:***@10.0.0.5:554/stream1'
    >>> mask_url("http://cam/snap.jpg?user=admin&pwd=secret&res=hd")
    'http://cam/snap.jpg?user=***&pwd=***&res=hd'
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
        return mask_text(f"{scheme}{sep}{MASK}:{MASK}@{netloc.rpartition('@')[2]}{slash}{path}")
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    cred = f"{MASK}:{MASK}" if parts.password is not None else MASK
    return urlunsplit((parts.scheme, f"{cred}@{host}", parts.path, mask_query(parts.query), parts.fragment))


def mask_query(query: str) -> str:
    """A URL's query string (without its ``?``) with the values of secret parameters replaced by ``***``.

    >>> mask_query("token=abc&fps=5")
    'token=***&fps=5'
    """
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, "&" + query)[1:] if query else query


def mask_text(text: str) -> str:
    """``text`` with the credentials of every ``scheme://user:pass@`` and secret query parameter masked."""
    text = _URL_IN_TEXT.sub(lambda m: f"{m.group(1)}{MASK}:{MASK}@", text)
    return _SECRET_PARAM.sub(lambda m: m.group(1) + MASK, text)


def quiet_http_clients() -> None:
    """Keep HTTP client libraries' request lines out of the logs, even when debugging.

    httpx logs every request's full URL at INFO; a webhook's URL often carries its secret in
    the path (Home Assistant's ``/api/webhook/<id>``). What camfleet wants said about a
    delivery, it logs itself, with the URL masked.
    """
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
