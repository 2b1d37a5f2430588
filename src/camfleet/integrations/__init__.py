"""Integrations: the node's events and state, told to other systems (MQTT, webhooks).

An :class:`Integration` contributes outbox sinks (so it receives every event at least
once, from the node's durable journal, with its own cursor) and may run while the node
runs (an MQTT client answering commands and publishing stats). :class:`Integrations`
builds the ones a configuration asks for and ties them to a node::

    integrations = Integrations.for_config(config)
    integrations.attach(node)      # before node.start(): registers the sinks
    node.start()
    integrations.start(node)       # clients connect, commands are taken
    ...
    integrations.quiesce()         # no more changes to the node (MQTT commands)
    node.stop()                    # the pump delivers what it can, to every sink
    integrations.stop()            # e.g. MQTT says "offline" and disconnects

The package sits above :mod:`camfleet.runtime` (it drives a node through
:class:`~camfleet.runtime.control.NodeControl`) and below the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from camfleet.config import Config
from camfleet.events import OutboxSink
from camfleet.runtime.control import NodeControl

log = logging.getLogger("camfleet.integrations")

__all__ = ["Integration", "Integrations", "SinkHost"]


class Integration(Protocol):
    """One integration: its outbox sinks, and what it runs while the node runs."""

    name: str

    def sinks(self) -> Sequence[OutboxSink]:
        """The outbox sinks it delivers from (may be empty)."""
        ...

    def start(self, node: NodeControl) -> None:
        """Start working against a started ``node`` (connect, subscribe, publish state)."""
        ...

    def stop(self) -> None:
        """Stop and release what it holds; called after the node stopped."""
        ...


class SinkHost(Protocol):
    """What takes outbox sinks: :class:`camfleet.runtime.Node`."""

    def add_sink(self, sink: OutboxSink) -> None:
        """Deliver the outbox to ``sink`` too (before the node starts)."""
        ...


IntegrationFactory = Callable[[Config], list[Integration]]
"""Builds the integrations of one kind that a configuration asks for (none when not configured)."""


def _factories() -> list[IntegrationFactory]:
    # imported here: each integration's client library loads only when the CLI builds them
    from camfleet.integrations.mqtt import mqtt_integrations  # noqa: PLC0415
    from camfleet.integrations.webhooks import webhook_integrations  # noqa: PLC0415

    return [mqtt_integrations, webhook_integrations]


class Integrations:
    """The integrations of one node, started and stopped together."""

    def __init__(self, items: Sequence[Integration]) -> None:
        self.items = list(items)

    @classmethod
    def for_config(cls, config: Config) -> Integrations:
        """The integrations ``config`` asks for (``mqtt:``, ``webhooks:``)."""
        return cls([item for factory in _factories() for item in factory(config)])

    def attach(self, node: SinkHost) -> None:
        """Register every integration's sinks with ``node`` (before it starts)."""
        for item in self.items:
            for sink in item.sinks():
                node.add_sink(sink)

    def start(self, node: NodeControl) -> None:
        """Start each integration; one that fails to start is logged and the others go on."""
        for item in self.items:
            try:
                item.start(node)
            except Exception:
                log.exception("integration %s failed to start", item.name)

    def quiesce(self) -> None:
        """Before ``node.stop()``: stop changing the node (commands); deliveries go on until :meth:`stop`.

        Calls each integration's optional ``quiesce()`` (errors logged, never raised).
        """
        for item in self.items:
            quiesce = getattr(item, "quiesce", None)
            if callable(quiesce):
                try:
                    quiesce()
                except Exception:
                    log.exception("integration %s failed to quiesce", item.name)

    def stop(self) -> None:
        """Stop each integration (errors logged, never raised)."""
        for item in self.items:
            try:
                item.stop()
            except Exception:
                log.exception("integration %s failed to stop cleanly", item.name)
