"""The JSONL sink: without a store, the outbox is delivered to ``<data_dir>/events.jsonl``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from camfleet.vocabulary import EventMessage, OutboxMessage


class JsonlSink:
    """Appends one JSON line per event message: ``{"type": <start|update|end>, **event}``.

    ``event`` as :meth:`camfleet.vocabulary.Event.to_json` writes it (times in epoch seconds).
    A file cannot upsert: after a crash between a write and the cursor's advance, a batch may
    appear twice; readers take the last line of each ``id``. Segments and activity spans are
    not written (they only matter to a store).
    """

    name = "jsonl"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        """Append the event messages and fsync (durable on return)."""
        lines = [json.dumps({"type": m.type, **m.event.to_json()}) + "\n"
                 for m in messages if isinstance(m, EventMessage)]
        if not lines:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
