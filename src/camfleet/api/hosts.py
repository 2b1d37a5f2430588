"""The Host allow-list and the Origin check: no DNS rebinding, no cross-site WebSocket hijacking.

A web page the user visits can make the browser talk to the API two ways:

* **DNS rebinding**: the page's own name (``evil.example``) is made to resolve
  to 127.0.0.1, so its scripts read the API as same-origin. The browser still
  sends ``Host: evil.example``, so every request (HTTP and WebSocket) whose
  Host is not an allowed name is refused with 421 (Misdirected Request).
  Allowed: the loopback names (``localhost``, ``127.0.0.1``, ``[::1]``), any
  IP address (a page can only be rebound through a *name*: a Host that is an
  address means the browser loaded the page from this server itself), and
  ``api.allowed_hosts`` (a name alone allows any port).
* **Cross-site requests** (a form post, a ``fetch`` in no-cors mode, a
  WebSocket opened from another site): the browser says where the page came
  from in ``Origin``. A WebSocket handshake and every request that is not a
  read (GET/HEAD/OPTIONS) must carry no Origin (non-browser clients) or one
  whose host and port equal the request's Host (the UI itself), or whose host
  is in ``api.allowed_hosts`` (a reverse proxy's public name); otherwise 403.

Browsers that send Fetch Metadata (``Sec-Fetch-Site``) also get a resource
isolation policy: a request another site's page makes (``cross-site``) is
refused (403) unless it is a plain navigation to a page (a link to the UI), so
a foreign page cannot even make the browser fetch clips or frames with
``<img>``/``<video>``. The one GET that writes (a clip export) is bounded
anyway, for clients that send no Fetch Metadata (:mod:`camfleet.api.clips`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("camfleet.api")

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_HEADER = 1024


def split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (``[v6]:port`` for IPv6) as (lower-case host, port); None when malformed."""
    value = value.strip().lower()
    if not value or len(value) > _MAX_HEADER:
        return None
    port_text = ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif value.count(":") == 1:
        host, port_text = value.split(":")
        if not port_text:
            return None
    elif ":" in value:
        return None  # a bare IPv6 address must be bracketed in a Host header
    else:
        host = value
    host = host.rstrip(".")  # "localhost." is "localhost"
    if not host:
        return None
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
            return None
        return host, int(port_text)
    return host, None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _origin_host(origin: str) -> tuple[str, int | None] | None:
    """The (host, port) of an ``http(s)://host[:port]`` Origin; None for anything else."""
    if len(origin) > _MAX_HEADER:
        return None
    try:
        parts = urlsplit(origin.strip())
        netloc = parts.netloc
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not netloc or "@" in netloc:
        return None
    return split_host(netloc)


class HostPolicy:
    """Which Host and Origin values the API accepts (see the module's docstring).

    ``allowed`` are the ``api.allowed_hosts`` entries: ``name`` (any port) or
    ``name:port`` (that port only), ``[v6]`` addresses bracketed.
    """

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._any_port: set[str] = set()
        self._with_port: set[tuple[str, int]] = set()
        for entry in allowed:
            parsed = split_host(entry)
            if parsed is None:
                raise ValueError(f"api.allowed_hosts: {entry!r} is not a host name or host:port")
            host, port = parsed
            if port is None:
                self._any_port.add(host)
            else:
                self._with_port.add((host, port))

    def _configured(self, host: str, port: int | None) -> bool:
        return host in self._any_port or (port is not None and (host, port) in self._with_port)

    def host_allowed(self, value: str | None) -> bool:
        """Whether a request with ``Host: value`` may be served (None: no Host header, not a browser)."""
        if value is None:
            return True
        parsed = split_host(value)
        if parsed is None:
            return False
        host, port = parsed
        return host in LOOPBACK_NAMES or _is_ip(host) or self._configured(host, port)

    def origin_configured(self, origin: str | None) -> bool:
        """Whether ``origin`` names a host of ``api.allowed_hosts`` (a site the user let in)."""
        parsed = _origin_host(origin) if origin is not None else None
        return parsed is not None and self._configured(*parsed)

    def origin_allowed(self, origin: str | None, host_header: str | None) -> bool:
        """Whether a write or WebSocket from a page at ``origin`` may reach the server ``host_header``."""
        if origin is None:
            return True  # browsers always send Origin on these requests: its absence means another client
        parsed = _origin_host(origin)
        if parsed is None:
            return False  # "null" (sandboxed frames, file://), extensions, anything odd
        if host_header is not None and parsed == split_host(host_header):
            return True  # same origin as the page the server itself sent (the UI)
        return self._configured(*parsed)


def _navigation(scope: Scope, fetch: dict[bytes, bytes]) -> bool:
    """Whether the browser is loading a page (following a link), not a resource for another site's page."""
    return (scope["type"] == "http" and scope.get("method") in {"GET", "HEAD"}
            and fetch.get(b"sec-fetch-mode") == b"navigate"
            and fetch.get(b"sec-fetch-dest", b"document") in {b"document", b"empty"})


class HostGuard:
    """ASGI middleware applying a :class:`HostPolicy` to every HTTP request and WebSocket handshake."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a foreign Host (421) or a cross-site Origin (403); pass everything else on."""
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        host: str | None = None
        origin: str | None = None
        hosts = origins = 0
        fetch: dict[bytes, bytes] = {}
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = value.decode("latin-1")
                hosts += 1
            elif name == b"origin":
                origin = value.decode("latin-1")
                origins += 1
            elif name.startswith(b"sec-fetch-"):
                fetch[name] = value.lower()
        if hosts > 1 or not self.policy.host_allowed(host):
            log.info("refused a request for host %r (not in api.allowed_hosts)", (host or "")[:100])
            await self._deny(scope, receive, send, 421, "this server does not answer to that host name; "
                                               "add it to api.allowed_hosts")
            return
        checked = scope["type"] == "websocket" or scope.get("method", "GET") not in SAFE_METHODS
        if checked and (origins > 1 or not self.policy.origin_allowed(origin, host)):
            log.info("refused a cross-site %s from origin %r", scope["type"], (origin or "")[:100])
            await self._deny(scope, receive, send, 403, "cross-site request refused (Origin not allowed)")
            return
        if fetch.get(b"sec-fetch-site") == b"cross-site" and not _navigation(scope, fetch) \
                and not self.policy.origin_configured(origin):
            await self._deny(scope, receive, send, 403, "cross-site request refused (Sec-Fetch-Site)")
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if scope["type"] == "websocket":
            await receive()  # the handshake's "websocket.connect": answered below, before any accept
            if "websocket.http.response" in scope.get("extensions", {}):
                await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
