"""The node's pump: delivers the journal to each sink at least once, and its tail to live listeners.

For each durable sink the pump reads the entries after the sink's cursor (kept in the
journal), writes them, and advances the cursor only once the sink returned. A batch that
fails with an outage (:func:`~camfleet.events.sink.is_outage`) is retried with back-off,
per sink: while one sink (a broker, a webhook receiver) is down, the others go on; any
other failure splits the batch until the one message that fails is found; that message
is logged, counted (``skipped``) and passed over so the next ones flow. Entries that do not
decode are skipped the same way. Periodically the journal is kept within its bounds
(:meth:`~camfleet.events.journal.Journal.enforce_bounds`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camfleet.redact import mask_text
from camfleet.vocabulary import EventMessage, OutboxMessage, decode

from .journal import Entry, Journal
from .sink import OutboxSink, is_outage

log = logging.getLogger("camfleet.events")

BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits (seconds) between retries of a batch during an outage; the last repeats."""

LiveListener = Callable[[dict[str, Any]], None]
"""Receives ``{"type": "event", "event_type": ..., "event": <REST Event shape>}`` (pump thread)."""


@dataclass(frozen=True)
class PumpSettings:
    """How the pump works.

    ``batch`` entries per sink write, ``poll_s`` seconds between looks at an idle journal,
    bounds applied every ``bounds_every_s`` seconds: at most ``max_entries`` undelivered
    entries, ``keep_delivered`` delivered entries kept.
    """

    batch: int = 500
    poll_s: float = 0.05
    bounds_every_s: float = 5.0
    max_entries: int = 1_000_000
    keep_delivered: int = 100_000


@dataclass
class _Outage:
    """A sink found unreachable: how often in a row, when to try again (monotonic s), why."""

    attempts: int
    retry_at: float
    error: str
    since: float


class Pump:
    """Moves journal entries to sinks (durable cursors) and to live listeners (from the tail).

    Run it in its threads (:meth:`start` / :meth:`stop`) or step it yourself (:meth:`run_once`).
    """

    def __init__(self, path: Path | str, sinks: Sequence[OutboxSink], *,
                 settings: PumpSettings | None = None) -> None:
        self.settings = settings or PumpSettings()
        self.journal = Journal(path)
        self.sinks = list(sinks)
        self._cursors = self.journal.register_sinks({s.name: bool(getattr(s, "from_tail", False))
                                                     for s in self.sinks})
        self._outages: dict[str, _Outage] = {}
        self._live = self.journal.last_seq()  # listeners get what is appended from now on
        self._listeners: list[LiveListener] = []
        self._lock = threading.Lock()  # the journal connection and the counters
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._deadline = float("inf")
        self._threads: list[threading.Thread] = []
        self._bounds_at = 0.0
        self.counts: dict[str, int] = {"delivered": 0, "skipped": 0, "retries": 0, "dropped": 0,
                                       "trimmed": 0}

    # ------------------------------------------------------------------ listeners

    def add_listener(self, listener: LiveListener) -> Callable[[], None]:
        """Feed ``listener`` each event appended from now on (not durable); returns the unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        """Run the pump: a daemon thread per sink, one for the listeners and the journal's bounds.

        A slow or dead sink holds up no other.
        """
        self._threads = [threading.Thread(target=self._sink_loop, args=(sink,), daemon=True,
                                          name=f"camfleet-outbox-{sink.name}") for sink in self.sinks]
        self._threads.append(threading.Thread(target=self._tail_loop, name="camfleet-outbox-tail",
                                              daemon=True))
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Deliver what is journalled for up to ``timeout`` seconds, then stop.

        What is not delivered stays in the journal for the next start.
        """
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        end = time.monotonic() + timeout + 2.0
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.error("outbox pump did not stop within %.1f s", timeout)
            return
        for name, row in self.sink_stats().items():
            if row["lag"]:
                log.warning("outbox: stopping with %d entries not delivered to %s (kept in the journal)",
                            row["lag"], name)
        with self._lock:
            self.journal.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait up to ``timeout`` seconds until every sink confirmed what is journalled now."""
        with self._lock:
            target = self.journal.last_seq()
            end = time.monotonic() + timeout
            while min(self._cursors.values(), default=target) < target:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def stats(self) -> dict[str, int]:
        """Counters of this run (delivered, skipped, retries, dropped, trimmed) and ``lag``.

        ``lag`` is the most entries any sink has still to take.
        """
        with self._lock:
            out = dict(self.counts)
            newest = self.journal.last_seq()
            out["lag"] = max((newest - c for c in self._cursors.values()), default=0)
        return out

    def sink_stats(self) -> dict[str, dict[str, Any]]:
        """Per sink: its lag, whether it is down, and its own counters.

        ``lag`` (entries still to take), ``down_s`` (seconds unreachable, 0 when up),
        ``attempts`` (failed tries in a row), ``error`` (the last outage's message) and whatever
        the sink's own ``stats()`` reports (when it has one).
        """
        now = time.time()
        with self._lock:
            newest = self.journal.last_seq()
            out: dict[str, dict[str, Any]] = {}
            for sink in self.sinks:
                outage = self._outages.get(sink.name)
                row: dict[str, Any] = {"lag": newest - self._cursors[sink.name],
                                       "down_s": round(now - outage.since, 1) if outage else 0.0,
                                       "attempts": outage.attempts if outage else 0,
                                       "error": outage.error if outage else ""}
                out[sink.name] = row
        for sink in self.sinks:
            own = getattr(sink, "stats", None)
            if callable(own):
                try:
                    out[sink.name].update(own())
                except Exception:
                    log.exception("outbox: stats of sink %s failed", sink.name)
        return out

    def _sink_loop(self, sink: OutboxSink) -> None:
        while True:
            try:
                busy = self._step(sink)
            except Exception:  # never let delivery die: log and go on after a pause
                log.exception("outbox: delivery to %s failed", sink.name)
                busy = False
            now = time.monotonic()
            outage = self._outages.get(sink.name)
            if self._stop.is_set() and (now >= self._deadline or (not busy and (
                    outage is None or outage.retry_at >= self._deadline))):
                return
            if busy:
                continue
            wait = self.settings.poll_s if outage is None else max(0.0, outage.retry_at - now)
            if self._stop.is_set():
                time.sleep(min(wait, max(0.0, self._deadline - now)))
            else:
                self._stop.wait(wait)

    def _tail_loop(self) -> None:
        while True:
            try:
                busy = self._feed_listeners()
                now = time.monotonic()
                if now - self._bounds_at >= self.settings.bounds_every_s:
                    self._bounds_at = now
                    self.enforce_bounds()
            except Exception:
                log.exception("outbox: feeding listeners failed")
                busy = False
            if self._stop.is_set():
                return
            if not busy:
                self._stop.wait(self.settings.poll_s)

    # ------------------------------------------------------------------ one pass

    def run_once(self) -> bool:
        """Deliver one batch to each sink and the listeners; returns whether there was anything."""
        busy = False
        for sink in self.sinks:
            busy |= self._step(sink)
        busy |= self._feed_listeners()
        now = time.monotonic()
        if now - self._bounds_at >= self.settings.bounds_every_s:
            self._bounds_at = now
            self.enforce_bounds()
        return busy

    def _step(self, sink: OutboxSink) -> bool:
        """Deliver one batch to ``sink`` unless it is in back-off; whether one was delivered."""
        with self._lock:
            outage = self._outages.get(sink.name)
            if outage is not None and time.monotonic() < outage.retry_at:
                return False  # down: the other sinks go on meanwhile
            entries = self.journal.read(self._cursors[sink.name], self.settings.batch)
        if not entries or not self._deliver(sink, entries):
            return False
        with self._lock:
            self.journal.advance(sink.name, entries[-1].seq)
            self._cursors[sink.name] = max(self._cursors[sink.name], entries[-1].seq)
            self.counts["delivered"] += len(entries)
            self._cond.notify_all()
        return True

    def enforce_bounds(self) -> None:
        """Trim and drop per the settings; re-reads the cursors a drop moved."""
        with self._lock:
            trimmed, dropped = self.journal.enforce_bounds(max_entries=self.settings.max_entries,
                                                           keep_delivered=self.settings.keep_delivered,
                                                           sinks=set(self._cursors))
            self.counts["trimmed"] += trimmed
            self.counts["dropped"] += dropped
            if dropped:
                stored = self.journal.cursors()
                self._cursors = {n: stored.get(n, c) for n, c in self._cursors.items()}
                self._live = max(self._live, min(self._cursors.values(), default=self._live))

    def _feed_listeners(self) -> bool:
        with self._lock:
            if not self._listeners:
                self._live = self.journal.last_seq()
                return False
            entries = self.journal.read(self._live, self.settings.batch)
            listeners = list(self._listeners)
        if not entries:
            return False
        self._live = entries[-1].seq
        for e in entries:
            if e.kind != "event":
                continue
            try:
                m = decode(e.body)
            except Exception:
                continue  # the durable sinks count it
            if not isinstance(m, EventMessage):
                continue
            note = {"type": "event", "event_type": m.type, "event": m.event.public()}
            for listener in listeners:
                try:
                    listener(note)
                except Exception:
                    log.exception("an event listener failed")
        return True

    # ------------------------------------------------------------------ delivery

    def _deliver(self, sink: OutboxSink, entries: list[Entry]) -> bool:
        """Write ``entries`` to ``sink``; False when it is unreachable (retried after a back-off)."""
        items: list[tuple[Entry, OutboxMessage]] = []
        for e in entries:
            try:
                items.append((e, decode(e.body)))
            except Exception as exc:
                self._skip(sink, e, exc)
        try:
            if items:
                self._write_split(sink, items)
        except Exception as exc:  # only outages come out of _write_split
            self._note_outage(sink, exc)
            return False
        with self._lock:
            recovered = self._outages.pop(sink.name, None) is not None
        if recovered:
            log.info("outbox: sink %s reachable again", sink.name)
        return True

    def _note_outage(self, sink: OutboxSink, exc: BaseException) -> None:
        previous = self._outages.get(sink.name)
        attempts = previous.attempts + 1 if previous else 1
        backoff = getattr(sink, "backoff_s", None) or BACKOFF_S
        wait = float(backoff[min(attempts - 1, len(backoff) - 1)])
        with self._lock:
            self.counts["retries"] += 1
            self._outages[sink.name] = _Outage(attempts, time.monotonic() + wait, mask_text(str(exc)),
                                               previous.since if previous else time.time())
        log.warning("outbox: sink %s unreachable (attempt %d, retry in %.1f s): %s",
                    sink.name, attempts, wait, mask_text(str(exc)))

    def _write_split(self, sink: OutboxSink, items: list[tuple[Entry, OutboxMessage]]) -> None:
        """Write ``items``; on a non-outage failure, halves until the failing message is found."""
        try:
            sequenced = getattr(sink, "write_entries", None)
            if callable(sequenced):  # a sink that keys by the journal's sequence (the fleet's stream)
                sequenced([(e.seq, m) for e, m in items])
            else:
                sink.write([m for _, m in items])
        except Exception as exc:
            if is_outage(exc):
                raise
            if len(items) == 1:
                self._skip(sink, items[0][0], exc)
                return
            mid = len(items) // 2
            self._write_split(sink, items[:mid])
            self._write_split(sink, items[mid:])

    def _skip(self, sink: OutboxSink, entry: Entry, exc: BaseException) -> None:
        log.error("outbox: sink %s refused entry %d (%s %s), skipped: %s: %s", sink.name, entry.seq,
                  entry.kind, entry.key, type(exc).__name__, exc)
        with self._lock:
            self.counts["skipped"] += 1
            self.journal.add_count(f"skipped:{sink.name}", 1)
