"""The event path: the node's side of the durable outbox (:mod:`camfleet.events`).

Camera processes append their events, activity spans and recording segments
to the node's journal (``<data_dir>/outbox.db``) themselves, each with its own
connection, so what they appended survives ``kill -9`` of any process. The
node's part is what surrounds that:

* at :meth:`EventPath.start`, before any camera process runs, the events a
  previous run left open (its pipelines are gone) are ended at their last
  sighting, in the journal and, where they never reached the journal's end,
  in the database;
* one :class:`~camfleet.events.Pump` delivers the journal to the sink (the
  store, or ``<data_dir>/events.jsonl`` without one) at least once, and feeds
  the listeners (the API's WebSocket) from its tail;
* :meth:`EventPath.stop`, after the camera processes have stopped, delivers
  what it can within a bound; the rest stays journalled for the next start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camfleet.config import Config
from camfleet.events import Journal, OutboxSink, Pump, PumpSettings, journal_path
from camfleet.events.dbsink import DatabaseSink
from camfleet.events.jsonl import JsonlSink

if TYPE_CHECKING:
    from camfleet.store import Store

log = logging.getLogger("camfleet.runtime")

STOP_S = 5.0
"""Seconds :meth:`EventPath.stop` lets the pump deliver what the stopped processes journalled last."""


class EventPath:
    """The node's outbox: closing what a crash left open, one pump, one sink, the live listeners.

    Args:
        config: the node's configuration (data directory, ``outbox`` settings).
        store: where events, activity spans and segments go; None: events go to
            ``<data_dir>/events.jsonl``.
        notify: called with ``{"type": "event", "event_type", "event"}`` (the REST
            ``Event`` shape) for each event the journal receives.
    """

    def __init__(self, config: Config, store: Store | None,
                 notify: Callable[[dict[str, Any]], None]) -> None:
        self._data_path = config.data_path
        self._settings = config.outbox
        self._store = store
        self._notify = notify
        self._pump: Pump | None = None
        self._extra: list[OutboxSink] = []

    def add_sink(self, sink: OutboxSink) -> None:
        """Deliver the journal to ``sink`` too (an MQTT broker, a webhook); call before :meth:`start`."""
        if self._pump is not None:
            raise RuntimeError("add sinks before the event path starts")
        if sink.name in {"store", "jsonl"} | {s.name for s in self._extra}:
            raise ValueError(f"an outbox sink named {sink.name!r} is already there")
        self._extra.append(sink)

    @property
    def journal(self) -> Path:
        """The journal file camera processes append to (``<data_dir>/outbox.db``)."""
        return journal_path(self._data_path)

    def start(self) -> None:
        """End the events a previous run left open, then start delivering the journal."""
        path = self.journal
        with Journal(path) as journal:
            closed = journal.close_open_events()  # every camera: their pipelines are gone
            journal.close_open_spans()  # motion going on when they died: see OPEN_SPAN_GRACE_S
            still_open = set(journal.open_events())
        if closed:
            log.info("ended %d event(s) a previous run left open, at their last sighting", len(closed))
        sink: OutboxSink
        if self._store is not None:
            db = DatabaseSink(self._store)
            try:  # events the database has open whose end never reached the journal
                db.close_stale(still_open)
            except Exception as exc:  # the database may be down: the journal waits for it
                log.warning("could not end the database's stale open events: %s", exc)
            sink = db
        else:
            sink = JsonlSink(self._data_path / "events.jsonl")
        settings = PumpSettings(max_entries=self._settings.max_entries,
                                keep_delivered=self._settings.keep_delivered)
        self._pump = Pump(path, [sink, *self._extra], settings=settings)
        self._pump.add_listener(self._notify)
        self._pump.start()

    def producer(self) -> str:
        """What a camera process is given to append with: the journal's path."""
        return str(self.journal)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything journalled so far is delivered; False after ``timeout`` seconds."""
        return self._pump.flush(timeout) if self._pump is not None else True

    def stats(self) -> dict[str, int]:
        """The pump's counters (delivered, skipped, retries, dropped, trimmed, lag); empty before start."""
        return self._pump.stats() if self._pump is not None else {}

    def sink_stats(self) -> dict[str, dict[str, Any]]:
        """Per sink: lag, outage (``down_s``, ``attempts``, ``error``) and the sink's own counters."""
        return self._pump.sink_stats() if self._pump is not None else {}

    def stop(self) -> None:
        """Deliver what the stopped processes journalled last (up to :data:`STOP_S`), then stop."""
        if self._pump is not None:
            self._pump.stop(timeout=STOP_S)
            self._pump = None
