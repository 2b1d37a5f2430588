"""An in-process writer: one thread owns every write, batching messages into transactions.

For single-process use (tools, tests, the benchmark's baseline): its queue is in memory, so
what is queued is lost if the process dies. The node does not use it: camera processes
append to the durable outbox (:mod:`camfleet.events`), delivered by its database sink.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from camfleet.store.errors import StoreError
from camfleet.store.records import ActivityRecord, EventRecord, SegmentRecord
from camfleet.store.store import Store
from camfleet.vocabulary import (
    ActivityMessage,
    Event,
    EventMessage,
    MotionSpan,
    OutboxMessage,
    SegmentMessage,
    from_json,
)

log = logging.getLogger(__name__)

BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Waits (seconds) between retries of a failed batch; the last repeats."""
PERMANENT_ATTEMPTS = 3
WriterMessage = OutboxMessage | Mapping[str, Any]
"""A typed outbox message, or its JSON form."""
_WAKE = object()
"""A batch failing this often with a non-connection error is written message by message."""


@dataclass
class _Batch:
    events: list[EventRecord] = field(default_factory=list)
    activities: list[ActivityRecord] = field(default_factory=list)
    segments: list[SegmentRecord] = field(default_factory=list)
    taken: int = 0  # messages taken off the queue (bad ones included)
    last_seq: int = 0

    def __len__(self) -> int:
        return len(self.events) + len(self.activities) + len(self.segments)


def parse_message(message: OutboxMessage | Mapping[str, Any]) -> Event | MotionSpan | SegmentRecord:
    """The record a writer message carries; ValueError/KeyError/TypeError if it is malformed.

    ``message`` is typed, or its JSON form (:func:`camfleet.vocabulary.to_json`).
    """
    m = message if isinstance(message, EventMessage | ActivityMessage | SegmentMessage) else None
    if m is None:
        m = from_json(message)  # type: ignore[arg-type]  # not a typed message: its JSON form
    if isinstance(m, EventMessage):
        return m.event
    if isinstance(m, ActivityMessage):
        return m.span
    return m.segment


def _transient(exc: BaseException) -> bool:
    """Whether a write failure is worth retrying as is (connection lost, database locked or down)."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(cause, OperationalError | InterfaceError):
        return True
    return isinstance(cause, DBAPIError) and bool(cause.connection_invalidated)


class StoreWriter:
    """The single writer path: one thread owns all writes, batching them into transactions.

    ``max_batch``: most messages per transaction; ``max_delay_s``: how long (seconds) the
    thread waits for more messages after the first of a batch. A malformed message is logged
    (with its kind) and dropped; a failed batch is retried with back-off, never dropped silently.
    """

    def __init__(self, store: Store, *, max_batch: int = 500, max_delay_s: float = 0.05) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.store = store
        self.max_batch = max_batch
        self.max_delay_s = max(0.0, max_delay_s)
        # items: (sequence number, message); None: stop; _WAKE: a flush is waiting, commit now
        self._queue: queue.SimpleQueue[tuple[int, WriterMessage] | object | None] = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._submitted = 0  # sequence number of the last submitted message
        self._done = 0  # every message up to this sequence number is committed or dropped
        self._flushers = 0
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._thread: threading.Thread | None = None
        self._counts = {"written": 0, "batches": 0, "errors": 0, "dropped": 0, "retries": 0, "lost": 0}
        self._last_batch_s = 0.0

    @property
    def stats(self) -> dict[str, float]:
        """Counters: messages written, batches, errors, dropped, retries, lost, queue_depth, last_batch_ms.

        ``errors`` counts dropped messages and failed write attempts; ``lost`` messages given up
        at stop; ``queue_depth`` (alias ``queue``) messages submitted but not yet committed;
        ``last_batch_ms`` the duration of the last commit in milliseconds.
        """
        with self._cond:
            out: dict[str, float] = {k: float(v) for k, v in self._counts.items()}
            out["queue_depth"] = out["queue"] = float(self._submitted - self._done)
        out["last_batch_ms"] = self._last_batch_s * 1000.0
        return out

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is not None:
            raise RuntimeError("StoreWriter already started")
        self._thread = threading.Thread(target=self._run, name="camfleet-store-writer", daemon=True)
        self._thread.start()

    def submit(self, message: WriterMessage) -> None:
        """Queue one message for writing (thread-safe, never blocks)."""
        with self._cond:
            if self._stop.is_set():
                raise RuntimeError("StoreWriter is stopped")
            self._submitted += 1
            self._queue.put((self._submitted, message))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds until every message submitted so far is committed (or dropped)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._submitted
            self._flushers += 1
            if self._done < target:
                self._queue.put(_WAKE)  # do not let a batch wait out max_delay_s
            try:
                while self._done < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._thread is None or not self._thread.is_alive():
                        return self._done >= target
                    self._cond.wait(left)
                return True
            finally:
                self._flushers -= 1

    def stop(self, timeout: float = 5.0) -> None:
        """Flush (up to ``timeout`` seconds) and stop the thread; what could not be written is logged."""
        with self._cond:
            if self._stop.is_set():
                return
            self._stop.set()
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abandon.set()  # a batch stuck retrying: give up on it
            self._thread.join(max(1.0, timeout / 2))
        with self._cond:
            left = self._submitted - self._done
        if left:
            log.error("store writer stopped with %d message(s) not written (database %s)", left,
                      self.store.url_public)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        stopping = False
        while True:
            batch = _Batch()
            try:
                first = self._queue.get_nowait() if stopping else self._queue.get()
            except queue.Empty:
                return  # stopping and drained
            if first is None:
                stopping = True
                continue
            if not isinstance(first, tuple):
                continue  # a wake-up with nothing to write
            self._add(batch, first)
            deadline = time.monotonic() + self.max_delay_s
            while batch.taken < self.max_batch:
                try:
                    if stopping or self._flushers:
                        item = self._queue.get_nowait()
                    else:
                        left = deadline - time.monotonic()
                        item = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                elif isinstance(item, tuple):
                    self._add(batch, item)
                else:
                    break  # a flush is waiting: commit what we have
            self._write(batch)

    def _add(self, batch: _Batch, item: tuple[int, WriterMessage]) -> None:
        seq, message = item
        batch.last_seq = seq
        batch.taken += 1
        kind = message.get("kind") if isinstance(message, Mapping) else type(message).__name__
        try:
            rec = parse_message(message)
        except Exception as exc:
            log.warning("store writer: dropped a bad %r message: %s: %s", kind, type(exc).__name__, exc)
            with self._cond:
                self._counts["dropped"] += 1
                self._counts["errors"] += 1
            return
        if isinstance(rec, EventRecord):
            batch.events.append(rec)
        elif isinstance(rec, ActivityRecord):
            batch.activities.append(rec)
        else:
            batch.segments.append(rec)

    def _write(self, batch: _Batch) -> None:
        attempt = 0
        while len(batch):
            t0 = time.perf_counter()
            try:
                self.store.write_batch(batch.events, batch.activities, batch.segments)
            except Exception as exc:
                attempt += 1
                with self._cond:
                    self._counts["errors"] += 1
                    self._counts["retries"] += 1
                transient = _transient(exc)
                log.warning("store writer: batch of %d failed (attempt %d, %s): %s", len(batch), attempt,
                            "will retry" if transient else "retrying", exc)
                if not transient and attempt >= PERMANENT_ATTEMPTS:
                    self._write_one_by_one(batch)
                    break
                if self._abandon.wait(BACKOFF_S[min(attempt - 1, len(BACKOFF_S) - 1)]):
                    log.error("store writer: gave up on a batch of %d message(s) at stop: %s",
                              len(batch), exc)
                    with self._cond:
                        self._counts["lost"] += len(batch)
                    break
                continue
            self._last_batch_s = time.perf_counter() - t0
            with self._cond:
                self._counts["written"] += len(batch)
                self._counts["batches"] += 1
            break
        with self._cond:
            self._done = max(self._done, batch.last_seq)
            self._cond.notify_all()

    def _write_one_by_one(self, batch: _Batch) -> None:
        """Isolate the message(s) a database refuses: write each alone, log and drop the refused ones."""
        singles: list[tuple[str, _Batch]] = (
            [("event", _Batch(events=[e])) for e in batch.events]
            + [("activity", _Batch(activities=[a])) for a in batch.activities]
            + [("segment", _Batch(segments=[s])) for s in batch.segments]
        )
        for kind, one in singles:
            try:
                self.store.write_batch(one.events, one.activities, one.segments)
            except Exception as exc:
                log.error("store writer: dropped a %s message the database refused: %s", kind, exc)
                with self._cond:
                    self._counts["dropped"] += 1
                    self._counts["errors"] += 1
                continue
            with self._cond:
                self._counts["written"] += 1
        with self._cond:
            self._counts["batches"] += 1
