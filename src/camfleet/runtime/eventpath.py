"""The event path: messages from camera processes to the store and the listeners.

Camera processes put JSON-ready messages (events, activity spans, recording
segments) on one multiprocessing queue (:meth:`EventPath.producer`); a pump
thread in the node hands each to the store's single writer
(:class:`camfleet.store.StoreWriter`) and each event to the listeners.
Without a store, events are appended to ``<data_dir>/events.jsonl``.

The node calls :meth:`EventPath.start` before any camera process starts,
gives each the :meth:`EventPath.producer`, and calls :meth:`EventPath.stop`
after they have all stopped (what they sent last is drained, then the
writer flushes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.context import BaseContext
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .protocols import Message, MessageSink

if TYPE_CHECKING:
    from camfleet.store import Store, StoreWriter

log = logging.getLogger("camfleet.runtime")

DRAIN_S = 2.0
"""Seconds :meth:`EventPath.stop` keeps taking messages the stopped processes sent last."""


class EventPath:
    """One queue from the camera processes, one pump thread, one store writer (or ``events.jsonl``).

    Args:
        ctx: the multiprocessing context the camera processes are started from.
        store: where events and segments go; None: events go to ``events_file``.
        events_file: the fallback file without a store (JSON lines).
        notify: called with ``{"type": "event", "event_type", "event"}`` for each event message.
    """

    def __init__(self, ctx: BaseContext, store: Store | None, events_file: Path,
                 notify: Callable[[dict[str, Any]], None]) -> None:
        self._ctx = ctx
        self._store = store
        self._events_file = events_file
        self._notify = notify
        self._sink: Queue[Message] | None = None
        self._writer: StoreWriter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Create the queue, start the store writer and the pump thread."""
        self._sink = self._ctx.Queue()
        if self._store is not None:
            from camfleet.store import StoreWriter  # noqa: PLC0415 - only with a store

            self._writer = StoreWriter(self._store)
            self._writer.start()
        self._thread = threading.Thread(target=self._pump, name="camfleet-sink", daemon=True)
        self._thread.start()

    def producer(self) -> MessageSink:
        """The handle camera processes put their messages on (picklable into a :class:`ChildSpec`)."""
        assert self._sink is not None, "start() the event path first"
        return self._sink

    def stop(self) -> None:
        """Stop the pump, take what is still queued (up to :data:`DRAIN_S`), close queue and writer."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        self._drain_sink()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.stop()

    def _pump(self) -> None:
        """Move messages from the camera processes to the store and the listeners."""
        assert self._sink is not None
        while True:
            try:
                message = self._sink.get(timeout=0.25)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            except (OSError, EOFError, ValueError):
                return
            self._handle(message)

    def _handle(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        if self._writer is not None:
            self._writer.submit(message)
        if message.get("kind") == "event":
            if self._writer is None:
                record = {"type": message["type"], **message["event"]}
                with self._events_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            self._notify({"type": "event", "event_type": message["type"], "event": message["event"]})

    def _drain_sink(self) -> None:
        if self._sink is None:
            return
        end = time.monotonic() + DRAIN_S
        with contextlib.suppress(queue.Empty, OSError, EOFError, ValueError):
            while time.monotonic() < end:
                self._handle(self._sink.get(timeout=0.05))
        self._sink.close()
        self._sink.join_thread()
