"""A sink that writes segment messages straight into a store (single-process use and tests).

In the node the recorder's sink is the node's outbox (:class:`camfleet.events.OutboxProducer`);
:class:`StoreSink` writes through an in-process :class:`camfleet.store.StoreWriter` instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from camfleet.store import StoreWriter
    from camfleet.vocabulary import OutboxMessage


class StoreSink:
    """Forwards every message to ``writer.submit`` (a :class:`camfleet.store.StoreWriter`)."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.count = 0

    def put(self, item: OutboxMessage) -> None:
        """Submit one message (a :class:`camfleet.vocabulary.SegmentMessage`)."""
        self.writer.submit(item)
        self.count += 1
