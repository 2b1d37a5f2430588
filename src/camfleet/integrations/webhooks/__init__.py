"""Webhooks: the node's event messages POSTed, signed, to HTTP receivers (``webhooks:``).

One :class:`~.sink.WebhookSink` per hook, each an outbox sink with its own cursor
(``webhook:<name>``), so every event reaches every hook at least once and a hook that is down
or slow holds up nothing else. The modules:

* :mod:`.payload`: the filters, the JSON body and the idempotency key;
* :mod:`.signing`: the HMAC-SHA256 signature and its check (what a receiver does);
* :mod:`.ssrf`: resolving the receiver's name, the address policy, the pinned connection;
* :mod:`.sink`: delivery, retries and per-hook stats.

The wire format is documented in ``docs/webhooks.md``.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from camfleet.config import Config
from camfleet.events import OutboxSink
from camfleet.integrations import Integration
from camfleet.runtime.control import NodeControl

from .sink import WebhookRefused, WebhookSink

__all__ = ["WebhookRefused", "WebhookSink", "Webhooks", "webhook_integrations"]


class Webhooks:
    """The ``webhooks`` integration: one sink per configured hook; nothing runs beside the pump."""

    name = "webhooks"

    def __init__(self, sinks: Sequence[WebhookSink]) -> None:
        self._sinks = list(sinks)

    def sinks(self) -> Sequence[OutboxSink]:
        """One sink per hook."""
        return list(self._sinks)

    def start(self, node: NodeControl) -> None:
        """Nothing to start: the node's pump drives the sinks."""

    def stop(self) -> None:
        """Close each hook's HTTP connections (after the node, and so the pump, stopped)."""
        for sink in self._sinks:
            sink.close()


def webhook_integrations(config: Config) -> list[Integration]:
    """The webhooks integration when ``config`` has hooks, else nothing."""
    if not config.webhooks:
        return []
    node = socket.gethostname()
    return [Webhooks([WebhookSink(hook, node=node) for hook in config.webhooks])]
