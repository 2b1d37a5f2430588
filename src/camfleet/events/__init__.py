"""The node's durable event outbox.

Camera processes append every event, segment and activity span to a SQLite journal
(:mod:`.journal`, via :class:`.producer.OutboxProducer`); the node's :class:`.pump.Pump`
delivers the journal to sinks at least once (the database: :mod:`.dbsink`; without a store,
a JSONL file: :mod:`.jsonl`) and feeds live listeners from its tail.

The pump's side (:class:`Pump`, :class:`OutboxSink`: SQLAlchemy and the store) is imported
on first use only: a camera process appends to the journal and needs none of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .journal import Entry, Journal, journal_path
from .producer import OutboxProducer

if TYPE_CHECKING:
    from .pump import Pump, PumpSettings
    from .sink import OutboxSink

_LAZY = {"Pump": ".pump", "PumpSettings": ".pump", "OutboxSink": ".sink"}

__all__ = ["Entry", "Journal", "OutboxProducer", "OutboxSink", "Pump", "PumpSettings", "journal_path"]


def __getattr__(name: str) -> Any:
    """The node-side names, imported when first asked for (PEP 562)."""
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
