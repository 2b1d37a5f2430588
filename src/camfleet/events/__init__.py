"""The node's durable event outbox.

Camera processes append every event, segment and activity span to a SQLite journal
(:mod:`.journal`, via :class:`.producer.OutboxProducer`); the node's :class:`.pump.Pump`
delivers the journal to sinks at least once (the database: :mod:`.dbsink`; without a store,
a JSONL file: :mod:`.jsonl`) and feeds live listeners from its tail.
"""

from __future__ import annotations

from .journal import Entry, Journal, journal_path
from .producer import OutboxProducer
from .pump import Pump, PumpSettings
from .sink import OutboxSink

__all__ = ["Entry", "Journal", "OutboxProducer", "OutboxSink", "Pump", "PumpSettings", "journal_path"]
