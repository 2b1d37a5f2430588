"""Node-to-node authentication: an HMAC over each request with a key every fleet member reads from NATS.

The key (32 random bytes) lives in the KV bucket ``camfleet_cluster`` under
``api_hmac_key``; the first agent or coordinator that needs it creates it
(a compare-and-set create, so all of them end up with the same key). Users
never see it: it is in no file, no log, no API answer. Whoever may read that
bucket is a fleet member; in production the NATS accounts of users that are
not agents or coordinators get no permission on ``$KV.camfleet_cluster.>``.

A coordinator signs each request it sends an agent's API with the header
``Camfleet-Cluster-Auth: v1 <unix seconds> <hex HMAC-SHA256>`` over
``v1\\n<seconds>\\n<METHOD>\\n<path?query>``. The agent accepts it within
``WINDOW_S`` of its own clock: a signature seen on the wire opens only that
same read of that same path, and only for that long (node-to-node HTTP may
be plain), unlike a bearer token that would open everything for ever.
A request with a body (the coordinator's ``PUT .../retain``) also signs the
body's SHA-256 (``\n<hex digest>`` appended), so a seen signature cannot carry
another body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from nats.js import JetStreamContext

from .kv import KvError, open_bucket

__all__ = ["AUTH_HEADER", "CLUSTER_BUCKET", "KEY_NAME", "WINDOW_S", "load_cluster_key", "sign", "verify"]

CLUSTER_BUCKET = "camfleet_cluster"
KEY_NAME = "api_hmac_key"
AUTH_HEADER = "Camfleet-Cluster-Auth"
WINDOW_S = 30.0
"""How far a signature's time may be from the verifier's clock (seconds, either way)."""
_VERSION = "v1"
_MAX_HEADER = 200


async def load_cluster_key(js: JetStreamContext, replicas: int = 1) -> bytes:
    """The fleet's API key: read from ``camfleet_cluster``, created there first if absent (raises KvError)."""
    bucket = await open_bucket(js, CLUSTER_BUCKET, replicas=replicas, markers_ttl_s=None)
    for _ in range(3):
        entry = await bucket.get(KEY_NAME)
        if entry is not None and entry.value:
            return base64.b64decode(entry.value)
        await bucket.create(KEY_NAME, base64.b64encode(secrets.token_bytes(32)))
    raise KvError(f"{CLUSTER_BUCKET}/{KEY_NAME}: created but not readable")


def _mac(key: bytes, stamp: int, method: str, target: str, body: bytes = b"") -> str:
    text = f"{_VERSION}\n{stamp}\n{method.upper()}\n{target}".encode()
    if body:
        text += b"\n" + hashlib.sha256(body).hexdigest().encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, target: str, now: float | None = None, body: bytes = b"") -> str:
    """The header value authenticating ``METHOD target`` (``target``: path and query as sent) and ``body``."""
    stamp = int(time.time() if now is None else now)
    return f"{_VERSION} {stamp} {_mac(key, stamp, method, target, body)}"


def verify(key: bytes, header: str | None, method: str, target: str, now: float | None = None,
           body: bytes = b"") -> bool:
    """Whether ``header`` signs ``METHOD target`` and ``body`` with ``key`` within ``WINDOW_S`` of ``now``."""
    if not header or len(header) > _MAX_HEADER:
        return False
    parts = header.split(" ")
    if len(parts) != 3 or parts[0] != _VERSION or not parts[1].isdigit():
        return False
    stamp = int(parts[1])
    if abs((time.time() if now is None else now) - stamp) > WINDOW_S:
        return False
    return hmac.compare_digest(parts[2], _mac(key, stamp, method, target, body))
