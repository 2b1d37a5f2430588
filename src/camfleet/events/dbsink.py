"""The database sink: the outbox's first destination, idempotent upserts into the store."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Protocol

from camfleet.vocabulary import (
    ActivityMessage,
    Event,
    EventMessage,
    MotionSpan,
    OutboxMessage,
    SegmentMessage,
    SegmentRecord,
)

log = logging.getLogger("camfleet.events")


class EventStore(Protocol):
    """What the database sink needs of :class:`camfleet.store.Store`."""

    def write_batch(self, events: Sequence[Event] = (), activities: Sequence[MotionSpan] = (),
                    segs: Sequence[SegmentRecord] = ()) -> None:
        """Upsert events (by id), activity spans (by camera, kind, start), segments (by path)."""
        ...

    def close_open_events(self, keep: Collection[str] = (), *, camera: str | None = None) -> int:
        """End open events not in ``keep`` at their last-seen time; returns how many."""
        ...


class DatabaseSink:
    """Writes a batch of outbox messages to the store in one transaction (upserts, so replay is safe)."""

    name = "database"

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        """Upsert ``messages``: events by id (the later state wins), spans and segments by key."""
        events: list[Event] = []
        spans: list[MotionSpan] = []
        segments: list[SegmentRecord] = []
        for m in messages:
            if isinstance(m, EventMessage):
                events.append(m.event)
            elif isinstance(m, ActivityMessage):
                spans.append(m.span)
            elif isinstance(m, SegmentMessage):
                segments.append(m.segment)
        self.store.write_batch(events, spans, segments)

    def close_stale(self, open_in_journal: Collection[str]) -> int:
        """End the events the database has open and the journal does not; returns how many.

        Their end was lost before the outbox existed, or their entries were dropped.
        """
        closed = self.store.close_open_events(open_in_journal)
        if closed:
            log.warning("closed %d event(s) the database had left open", closed)
        return closed
