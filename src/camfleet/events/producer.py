"""What a camera process holds: :class:`OutboxProducer` appends its messages to the journal."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from camfleet.vocabulary import Event, MotionSpan, OutboxMessage

from .journal import Journal

SEEN_PERIOD_S = 1.0
"""Least time (seconds) between two last-seen refreshes that have nothing else to commit."""


class OutboxProducer:
    """A camera process's own connection to ``<data_dir>/outbox.db``.

    :meth:`append` commits what one frame produced in one transaction; :meth:`put` (the
    recorder's sink protocol) commits one message. Both return once the messages are on disk.
    Open events' last-seen times are refreshed with each append, or alone at most every
    :data:`SEEN_PERIOD_S` seconds, so an event whose end is lost is closed within that of
    its true last sighting.
    """

    def __init__(self, path: Path | str, *, fsync: bool = True) -> None:
        # FULL: each commit fsyncs the WAL (power-safe); NORMAL: written to the OS, safe from kill -9
        self.journal = Journal(path, synchronous="FULL" if fsync else "NORMAL")
        self._seen_at = 0.0
        self._pending_seen: Mapping[str, float] | None = None  # refreshes not yet committed
        self.appended = 0

    def append(self, messages: Sequence[OutboxMessage], seen: Mapping[str, float] | None = None) -> None:
        """Journal ``messages`` and refresh ``seen`` (event id -> last seen, epoch s) in one transaction."""
        now = time.monotonic()
        if not messages and (not seen or now - self._seen_at < SEEN_PERIOD_S):
            self._pending_seen = seen or self._pending_seen
            return
        self.journal.append(messages, seen=seen)
        self._seen_at, self._pending_seen = now, None
        self.appended += len(messages)

    def put(self, item: OutboxMessage) -> None:
        """Journal one message (durable on return)."""
        self.journal.append([item])
        self.appended += 1

    def close_open_events(self, camera: str) -> list[Event]:
        """Commit the newest last-seen times, then end ``camera``'s open events at them."""
        if self._pending_seen:
            self.journal.append([], seen=self._pending_seen)
            self._pending_seen = None
        return self.journal.close_open_events(camera)

    def close_open_spans(self, camera: str) -> list[MotionSpan]:
        """Close ``camera``'s activity spans a previous process left open (see the journal's)."""
        return self.journal.close_open_spans(camera)

    def close(self) -> None:
        """Close the connection."""
        self.journal.close()
