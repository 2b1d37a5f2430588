"""Signing a delivery and checking a signature: HMAC-SHA256 over ``"<timestamp>.<body>"``.

The node sends ``X-Camfleet-Timestamp: <epoch seconds>`` and
``X-Camfleet-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>``; a receiver
recomputes the HMAC over the raw body it got, compares in constant time, and refuses a
timestamp outside its replay window (:func:`verify`, the reference of ``docs/webhooks.md``).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["SCHEME", "TOLERANCE_S", "sign", "verify"]

SCHEME = "v1"
"""The signature scheme's name, as written in the header (``v1=<hex>``)."""

TOLERANCE_S = 300
"""A receiver's replay window: timestamps further than this from its clock are refused (seconds)."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Camfleet-Signature`` value for ``body`` sent at ``timestamp`` (epoch seconds)."""
    return f"{SCHEME}={_mac(secret, timestamp, body)}"


def verify(secret: str, timestamp: str, signature: str, body: bytes, *, now: float,
           tolerance_s: float = TOLERANCE_S) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` with ``secret``, within the window.

    ``signature`` and ``timestamp`` are the headers' text (several ``v1=`` entries may be
    comma-separated); ``timestamp`` must be within ``tolerance_s`` seconds of ``now`` (epoch s).
    """
    if not (timestamp.isascii() and timestamp.isdigit()):
        return False
    ts = int(timestamp)
    if abs(now - ts) > tolerance_s:
        return False
    expected = _mac(secret, ts, body)
    for part in signature.split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME and hmac.compare_digest(value, expected):
            return True
    return False
