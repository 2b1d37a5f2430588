"""``create_agent_app``: an agent's API: the node API's media reads, for the fleet's coordinators only.

The app is the node's own (:func:`~camfleet.api.app.create_app`) behind
:class:`ClusterGuard`: every request must carry a valid cluster signature
(:mod:`camfleet.cluster.clusterauth`), else 401, whatever the path (health,
UI and docs included); a signed request may only read the media paths and
``/api/storage``, set an event's retain flag (``PUT .../retain``, its body
signed too) and open a camera's ``/meta`` WebSocket (others: 404). The
node's viewer/admin tokens open nothing here, unless
``node_tokens`` is set: then a request without a signature goes through the
node's own authentication instead.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.types import ASGIApp, Receive, Scope, Send

from camfleet.cluster.clusterauth import AUTH_HEADER, verify
from camfleet.config import ApiSettings
from camfleet.runtime.control import NodeControl
from camfleet.store import Store

from ..app import create_app
from ..auth import PRINCIPAL_SCOPE, Principal, authorize

__all__ = ["MEDIA_PATHS", "READ_PATHS", "WRITE_PATHS", "WS_PATHS", "ClusterGuard", "create_agent_app"]

MEDIA_PATHS = re.compile(
    r"^/api/(cameras/[^/]+/(frame\.jpg|mjpeg)"
    r"|recordings(/[^/]+/(clip\.mp4|timeline)|/files/.+)?"
    r"|events/[^/]+/(snapshot\.jpg|clip\.mp4))$")
"""The media paths: live frames, MJPEG, recordings, clips, timelines, snapshots."""
READ_PATHS = re.compile(MEDIA_PATHS.pattern + r"|^/api/storage$")
"""The paths a signed GET may read: the media and the node's storage."""
WRITE_PATHS = re.compile(r"^/api/events/[^/]+/retain$")
"""The paths a signed PUT may write (its body signed too): an event's retain flag."""
WS_PATHS = re.compile(r"^/api/cameras/[^/]+/meta$")
"""The WebSockets a signed request may open: a camera's live detections."""
MAX_SIGNED_BODY = 4096
"""Largest body a signed write may carry (bytes)."""
CLUSTER = Principal("cluster", "viewer")
_HEADER = AUTH_HEADER.lower().encode()
SIGNED = "camfleet.cluster_signed"
_WS_IDS = itertools.count(1)


class ClusterGuard:
    """ASGI middleware: only signed requests the fleet needs pass (and, if allowed, node tokens).

    GETs of :data:`READ_PATHS`, PUTs of :data:`WRITE_PATHS` (their body signed too) and
    WebSockets of :data:`WS_PATHS`; other signed requests get 404, unsigned ones 401.

    ``key`` returns the fleet's key (None until the agent has read it: every request gets 503).
    """

    def __init__(self, app: ASGIApp, key: Callable[[], bytes | None], node_tokens: bool = False) -> None:
        self.app = app
        self.key = key
        self.node_tokens = node_tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the signature, mark the request as the cluster's, or answer 401/404/503."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER), None)
        key = self.key()
        if header is None and self.node_tokens:
            await self.app(scope, receive, send)  # the node's own authentication decides
            return
        if key is None:
            await _refuse(scope, send, 503, "the node has not joined the fleet yet")
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        target = raw.decode("latin-1") + (f"?{scope['query_string'].decode('latin-1')}"
                                          if scope.get("query_string") else "")
        method = scope.get("method", "GET")
        body = b""
        if scope["type"] == "http" and method == "PUT" and WRITE_PATHS.match(scope["path"]):
            got = await _read_body(receive)
            if got is None:
                await _refuse(scope, send, 413, f"a signed body is at most {MAX_SIGNED_BODY} bytes")
                return
            body, receive = got, _replay(got, receive)
        if not verify(key, header, method, target, body=body):
            await _refuse(scope, send, 401, "a valid cluster signature is required")
            return
        if scope["type"] == "websocket":
            if not WS_PATHS.match(scope["path"]):
                await _refuse(scope, send, 404, "not found")
                return
            # one name per connection: the coordinator counts its users' sockets, the node need not
            scope[PRINCIPAL_SCOPE] = Principal(f"cluster#{next(_WS_IDS)}", "viewer")
        elif not ((method == "GET" and READ_PATHS.match(scope["path"]))
                  or (method == "PUT" and WRITE_PATHS.match(scope["path"]))):
            await _refuse(scope, send, 404, "not found")
            return
        scope[SIGNED] = True
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when it is over :data:`MAX_SIGNED_BODY` (or the client left)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_SIGNED_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` (already read) once, then what the client sends next."""
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return again


async def _refuse(scope: Scope, send: Send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": detail})
        return
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_agent_app(node: NodeControl, store: Store, settings: ApiSettings,
                     key: Callable[[], bytes | None], *, data_dir: Path, recordings_dir: Path,
                     node_tokens: bool = False) -> FastAPI:
    """The node API of ``node`` for the fleet's coordinators (see the module's docstring).

    Args:
        node: the agent's running node.
        store: the node's database (events, segments; its tokens only with ``node_tokens``).
        settings: the ``api`` settings (``open`` is ignored: the agent's API is never open).
        key: returns the fleet's key once read (None before).
        data_dir: where snapshots and exported clips live.
        recordings_dir: where recording segments live.
        node_tokens: also accept the node's own tokens on requests without a signature.
    """
    app = create_app(node, store, settings.model_copy(update={"open": False}), data_dir=data_dir,
                     recordings_dir=recordings_dir)
    original = authorize

    def cluster_or_node(request: Request) -> Principal:
        if request.scope.get(SIGNED):
            request.state.principal = CLUSTER
            return CLUSTER
        ctx = request.app.state.ctx
        header = request.headers.get("authorization", "")
        creds = (HTTPAuthorizationCredentials(scheme="Bearer", credentials=header[7:].strip())
                 if header[:7].lower() == "bearer " else None)
        return original(request, ctx, creds)

    app.dependency_overrides[authorize] = cluster_or_node
    app.add_middleware(ClusterGuard, key=key, node_tokens=node_tokens)
    return app
