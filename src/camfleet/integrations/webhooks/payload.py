"""What a hook is sent: which messages match its filters, the JSON body, the idempotency key.

The body of one delivery (compact JSON, keys sorted, UTF-8)::

    {"key": "<idempotency key>", "type": "start|update|end", "hook": "<hook name>",
     "node": "<host name>", "event": <the REST API's Event>}

It depends only on the journalled message, so a redelivery (after a timeout, a crash, a
restart) carries the same body and the same key: ``<event id>:<type>:<digest>``, the digest
being over the rest of the body (the event's state), so two messages about one event differ.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from camfleet.config.webhooks import WebhookConfig
from camfleet.vocabulary import EventMessage

__all__ = ["Delivery", "delivery", "matches"]


def matches(hook: WebhookConfig, message: EventMessage) -> bool:
    """Whether ``message`` passes ``hook``'s filters (event type, camera, label, entered zones)."""
    event = message.event
    if message.type not in hook.events:
        return False
    if hook.cameras and event.camera not in hook.cameras:
        return False
    if hook.labels and event.label not in hook.labels:
        return False
    return not hook.zones or any(zone in hook.zones for zone in event.zones)


def _dump(value: dict[str, Any]) -> bytes:
    # NaN/Infinity are not JSON: such a message is refused here, not by every receiver
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=False).encode("utf-8")


class Delivery:
    """One message ready to POST: its ``key`` (idempotency key), ``type`` and ``body`` (bytes)."""

    __slots__ = ("body", "key", "type")

    def __init__(self, key: str, type_: str, body: bytes) -> None:
        self.key = key
        self.type = type_
        self.body = body


def delivery(hook: str, node: str, message: EventMessage) -> Delivery:
    """The delivery of ``message`` to the hook called ``hook`` from ``node``.

    Raises:
        ValueError: the event holds a value JSON cannot carry (NaN, infinity).
    """
    content: dict[str, Any] = {"type": message.type, "hook": hook, "node": node,
                               "event": message.event.public()}
    digest = hashlib.sha256(_dump(content)).hexdigest()[:20]
    key = f"{message.event.id}:{message.type}:{digest}"
    return Delivery(key, message.type, _dump({"key": key, **content}))
