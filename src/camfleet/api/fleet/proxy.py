"""``NodeProxy``: the coordinator streams a media read from the node that holds the media.

The node's API address comes from its registration (``NodeRecord.api_url`` in
``camfleet_nodes``); each request is signed with the fleet's key
(:mod:`camfleet.cluster.clusterauth`), never with the user's token (that stays
at the coordinator, which checked it). The answer streams through as it comes:
status, body and the headers a media client needs (Range in, ``206`` and
``Content-Range`` out); nothing is held in memory beyond httpx's chunks. A node
that does not accept the connection within ``CONNECT_S`` answers 503 "node X
unreachable since T", T being the last time this coordinator heard from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from camfleet.cluster.clusterauth import AUTH_HEADER, load_cluster_key, sign
from camfleet.cluster.kv import KvError, open_bucket
from camfleet.cluster.registry import NODES_BUCKET, NodeRecord, RecordError

from .link import FleetLink

__all__ = ["CONNECT_S", "NodeProxy"]

log = logging.getLogger("camfleet.api.fleet")

CONNECT_S = 1.0
"""How long a connection to a node may take before it counts as unreachable (seconds)."""
READ_S = 30.0
"""Longest silence of a node within one answer (seconds; a clip export, a stalled MJPEG)."""
RECORD_TTL_S = 2.0
"""How long a node's registration (its API address) is reused (seconds)."""
_REQUEST_HEADERS = ("range", "if-range", "if-none-match", "if-modified-since", "accept")
_RESPONSE_HEADERS = ("content-type", "content-length", "content-range", "accept-ranges", "etag",
                     "last-modified", "cache-control", "content-disposition", "content-encoding",
                     "retry-after", "link", "x-frame-seq", "x-clip-start", "x-clip-end")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeProxy:
    """Forwards media reads to nodes: one httpx client, the fleet's key, each node's address and outages."""

    def __init__(self, link: FleetLink, clock: Callable[[], float] = time.time) -> None:
        self.link = link
        self.clock = clock
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(READ_S, connect=CONNECT_S, pool=CONNECT_S),
                                         follow_redirects=False, trust_env=False)
        self._key: bytes | None = None
        self._urls: dict[str, tuple[str | None, float]] = {}
        self._down: dict[str, float] = {}

    async def close(self) -> None:
        """Close the connections to the nodes."""
        await self._client.aclose()

    @property
    def cached_key(self) -> bytes | None:
        """The fleet's key once read (None before; any thread)."""
        return self._key

    async def fleet_key(self) -> bytes:
        """The fleet's key, read from NATS the first time (HTTPException 503 while it cannot be)."""
        return await self._fleet_key()

    async def _fleet_key(self) -> bytes:
        if self._key is None:
            try:
                self._key = await load_cluster_key(self.link.jetstream())
            except (KvError, ConnectionError) as exc:
                raise HTTPException(503, f"the fleet's key cannot be read from NATS: {exc}") from None
        return self._key

    async def _node_url(self, node_id: str) -> str:
        cached = self._urls.get(node_id)
        now = time.monotonic()
        if cached is None or now - cached[1] > RECORD_TTL_S:
            try:
                bucket = await open_bucket(self.link.jetstream(), NODES_BUCKET, markers_ttl_s=None)
                entry = await bucket.get(node_id)
                url = NodeRecord.from_bytes(entry.value, node_id).api_url if entry is not None else None
            except (KvError, ConnectionError, RecordError) as exc:
                raise HTTPException(503, f"node {node_id}'s registration cannot be read: {exc}") from None
            cached = (url, now)
            self._urls[node_id] = cached
        if cached[0] is None:
            raise HTTPException(503, f"node {node_id} serves no API (an agent from before media proxying?)")
        return cached[0]

    def _since(self, node_id: str) -> float:
        """When the node was last heard from (its last status), else when it first failed (epoch s)."""
        heard = self.link.statuses().get(node_id)
        if heard is not None:
            return self.clock() - (time.monotonic() - heard[1])
        return self._down.setdefault(node_id, self.clock())

    def _unreachable(self, node_id: str, why: str) -> HTTPException:
        self._urls.pop(node_id, None)  # read the registration again: the node may come back elsewhere
        return HTTPException(503, f"node {node_id} unreachable since {_iso(self._since(node_id))} ({why})",
                             headers={"Retry-After": "2"})

    async def call(self, node_id: str, method: str, path: str, body: bytes = b"",
                   timeout_s: float = 5.0) -> httpx.Response:
        """A small signed request to ``node_id`` (body signed too), read in full.

        503 "node X unreachable since T" when it cannot be reached; 502 when it refuses the key.
        """
        base = await self._node_url(node_id)
        key = await self._fleet_key()
        headers = {"content-type": "application/json"} if body else {}
        req = self._client.build_request(method, base + path, content=body or None, headers=headers,
                                         timeout=httpx.Timeout(timeout_s, connect=CONNECT_S, pool=CONNECT_S))
        req.headers[AUTH_HEADER] = sign(key, method, req.url.raw_path.decode("latin-1"), body=body)
        return await self._send(node_id, req, stream=False)

    async def _send(self, node_id: str, req: httpx.Request, *, stream: bool) -> httpx.Response:
        """Send a signed request to ``node_id``; 503 naming it when it does not answer.

        A 502 when it refuses the fleet's credential (read again next time: it may have been replaced).
        """
        try:
            resp = await self._client.send(req, stream=stream)
        except httpx.TimeoutException as exc:
            raise self._unreachable(node_id, "no answer" if isinstance(exc, httpx.ReadTimeout)
                                    else f"no connection within {CONNECT_S:g} s") from None
        except httpx.HTTPError as exc:
            raise self._unreachable(node_id, type(exc).__name__) from None
        self._down.pop(node_id, None)
        if resp.status_code == 401:
            await resp.aclose()
            self._key = None
            raise HTTPException(502, f"node {node_id} refused the fleet's credential")
        return resp

    async def websocket_target(self, node_id: str, path: str) -> tuple[str, dict[str, str]]:
        """The ``ws://`` URL of ``path`` on ``node_id`` and the signed headers to open it with."""
        base = await self._node_url(node_id)
        key = await self._fleet_key()
        scheme, _, rest = base.partition("://")
        url = ("wss" if scheme == "https" else "ws") + "://" + rest + path
        return url, {AUTH_HEADER: sign(key, "GET", httpx.URL(url).raw_path.decode("latin-1"))}

    def unreachable(self, node_id: str, why: str) -> HTTPException:
        """The 503 naming ``node_id`` and since when it is unreachable (``why``: what failed)."""
        return self._unreachable(node_id, why)

    async def forward(self, request: Request, node_id: str, path: str) -> StreamingResponse:
        """Send ``GET path`` (URL-encoded) and the request's query to ``node_id``; stream its answer."""
        base = await self._node_url(node_id)
        key = await self._fleet_key()
        headers = {h: v for h in _REQUEST_HEADERS if (v := request.headers.get(h)) is not None}
        headers["accept-encoding"] = "identity"
        query = request.url.query
        req = self._client.build_request("GET", base + path + (f"?{query}" if query else ""), headers=headers)
        req.headers[AUTH_HEADER] = sign(key, "GET", req.url.raw_path.decode("latin-1"))
        resp = await self._send(node_id, req, stream=True)
        out = {h: v for h in _RESPONSE_HEADERS if (v := resp.headers.get(h)) is not None}
        out["x-camfleet-node"] = node_id
        return StreamingResponse(_relay(resp, node_id), status_code=resp.status_code, headers=out,
                                 background=BackgroundTask(resp.aclose))


async def _relay(resp: httpx.Response, node_id: str) -> AsyncIterator[bytes]:
    """The node's body as it comes; a node lost mid-answer ends it (the client sees a short body)."""
    try:
        async for chunk in resp.aiter_raw():
            yield chunk
    except httpx.HTTPError as exc:
        log.warning("node %s: answer cut short: %s", node_id, type(exc).__name__)
