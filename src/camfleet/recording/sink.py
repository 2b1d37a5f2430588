"""A sink that writes segment messages straight into a store (single-process use and tests).

In the node the recorder's sink is a ``multiprocessing.Queue`` read by the
store's single writer; :class:`StoreSink` does the same job in one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from camfleet.store import StoreWriter


class StoreSink:
    """Forwards every message to ``writer.submit`` (a :class:`camfleet.store.StoreWriter`)."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer
        self.count = 0

    def put(self, item: dict[str, Any]) -> None:
        """Submit one message (e.g. ``{"kind": "segment", "segment": {...}}``)."""
        self.writer.submit(item)
        self.count += 1
