"""Which NATS server leads a replicated stream, and moving one leader away from another's server.

Used to keep the two heartbeat buckets' streams led by different servers:
a replicated stream takes no write for the 5-7 s its followers need to elect
a new leader after the leader's server dies, and an agent's lease is shorter
than that. With the leaders apart, one lost server leaves a bucket that takes
beats. Requests go to the JetStream API (``$JS.API.STREAM.INFO`` and
``$JS.API.STREAM.LEADER.STEPDOWN``); a stepdown makes the stream's followers
elect one of themselves, so a few passes settle on different servers.
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client

__all__ = ["spread_leaders", "stream_leader"]

API_TIMEOUT_S = 2.0


async def _api(client: Client, subject: str) -> dict[str, Any]:
    reply = await client.request(subject, b"", timeout=API_TIMEOUT_S)
    data: dict[str, Any] = json.loads(reply.data)
    if "error" in data:
        raise RuntimeError(f"{subject}: {data['error'].get('description', data['error'])}")
    return data


async def stream_leader(client: Client, stream: str) -> tuple[str | None, int]:
    """The server leading ``stream`` (None: none now, or not clustered) and its replica count."""
    info = await _api(client, f"$JS.API.STREAM.INFO.{stream}")
    cluster = info.get("cluster") or {}
    replicas = int((info.get("config") or {}).get("num_replicas", 1))
    return cluster.get("leader"), replicas


async def spread_leaders(client: Client, streams: list[str]) -> tuple[str, str] | None:
    """If two of ``streams`` (replicated) share a leader, ask the later one to step down.

    Returns (server, stream asked) when it asked, else None. One stepdown per
    call: the caller checks again later.
    """
    seen: dict[str, str] = {}
    for stream in streams:
        leader, replicas = await stream_leader(client, stream)
        if leader is None or replicas < 2:
            continue
        if leader in seen:
            await _api(client, f"$JS.API.STREAM.LEADER.STEPDOWN.{stream}")
            return leader, stream
        seen[leader] = stream
    return None
