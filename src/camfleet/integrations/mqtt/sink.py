"""The MQTT outbox sink: events, counts, snapshots and motion, delivered from the durable outbox.

The pump gives it batches in journal order (its own thread: waiting here holds up nothing
else). Each batch becomes Frigate's publications, sent with the configured QoS; :meth:`write`
returns once the broker acknowledged all of them (snapshots, retained pictures, are sent after
that without waiting), so the pump's cursor moves only past what
the broker has. While the broker is away :meth:`write` raises ConnectionError and the pump
keeps the batch and retries with back-off: an outage delays messages and loses none (up to
the outbox's ``max_entries``, past which the oldest are dropped and counted). A batch sent
again after a lost acknowledgement is published again (at least once).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from camfleet.vocabulary import ActivityMessage, EventMessage, OutboxMessage

from .book import EventBook, MotionBook, topic_level
from .client import Broker
from .payloads import Publication

log = logging.getLogger("camfleet.integrations.mqtt")

__all__ = ["MAX_SNAPSHOT_BYTES", "MqttSink"]

MAX_SNAPSHOT_BYTES = 8 * 2**20
"""Snapshots larger than this are not published (bytes)."""

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class MqttSink:
    """Publishes the outbox to the broker as Frigate does; ``name`` ``mqtt`` keys its cursor."""

    from_tail = True
    """A broker configured now gets what happens from now on, not the journal's history."""
    backoff_s = (0.5, 1.0, 2.0, 5.0, 10.0)
    """Seconds between retries of a batch while the broker is unreachable."""

    def __init__(self, broker: Broker, *, data_dir: Path, off_delay: float, confirm_timeout: float,
                 has_clip: Callable[[str], bool] | None = None, name: str = "mqtt") -> None:
        self.name = name
        self.broker = broker
        self.data_dir = data_dir
        self.confirm_timeout = confirm_timeout
        self.events = EventBook(has_clip)
        self.motion = MotionBook(off_delay)
        self.motion_lock = threading.Lock()  # the motion book and the order of its ON/OFF
        self.counts = {"delivered": 0, "published": 0, "failed": 0, "snapshots": 0}

    # ------------------------------------------------------------------ OutboxSink

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        """Publish ``messages`` and wait for the broker's acknowledgement (see the module)."""
        if not self.broker.connected:
            self.counts["failed"] += 1
            raise ConnectionError(f"MQTT broker {self.broker.where}: {self.broker.error}")
        book = self.events.copy()  # kept only once the broker has the batch: a retry repeats `before`
        pubs: list[Publication] = []
        snapshots: list[EventMessage] = []
        now = time.time()
        for m in messages:
            if isinstance(m, EventMessage):
                pubs += book.event(m)
                if book.snapshot_due(m):
                    snapshots.append(m)
            elif isinstance(m, ActivityMessage) and m.span.kind == "motion":
                with self.motion_lock:
                    pubs += self.motion.span(m.span, now)
        try:
            self.broker.publish_confirmed(pubs, self.confirm_timeout)
        except (ConnectionError, TimeoutError):
            self.counts["failed"] += 1
            raise
        self.events = book
        self.counts["delivered"] += len(messages)
        self.counts["published"] += len(pubs)
        # snapshots are the latest picture (retained), sent once and not waited for: a broker that
        # refuses a large message (and drops the connection) must not hold up the events for ever
        for m in snapshots:
            for pub in self._snapshot(m):
                self.broker.publish(pub)

    def stats(self) -> dict[str, Any]:
        """Its counters for the node's status and ``/metrics``.

        ``delivered`` outbox messages the broker acknowledged, ``published`` MQTT messages,
        ``failed`` batches, ``snapshots``, ``connected`` (0/1),
        ``connects`` (connections made) and ``broker_error`` (why it is not connected, or empty).
        """
        return {**self.counts, "connected": int(self.broker.connected), "connects": self.broker.connects,
                "broker_error": "" if self.broker.connected else self.broker.error}

    # ------------------------------------------------------------------ helpers

    def _snapshot(self, m: EventMessage) -> list[Publication]:
        ev = m.event
        if not (_SAFE_NAME.match(ev.id) and topic_level(ev.label)):
            return []  # not an id the pipeline makes (a damaged journal): no file to read, no topic
        # the file the snapshot element writes; the event's own path is not trusted as a path to read
        path = self.data_dir / "snapshots" / ev.camera / f"{ev.id}.jpg"
        try:
            if path.stat().st_size > MAX_SNAPSHOT_BYTES:
                log.warning("mqtt: snapshot of event %s is over %d bytes; not published", ev.id,
                            MAX_SNAPSHOT_BYTES)
                return []
            jpeg = path.read_bytes()
        except OSError:
            return []  # gone (retention) or never written: the event goes out without it
        self.counts["snapshots"] += 1
        return [Publication(f"{ev.camera}/{ev.label}/snapshot", jpeg, retain=True)]

    def motion_due(self, now: float) -> None:
        """Publish the motion ``OFF``s whose delay has passed (not confirmed: state is re-sent on connect)."""
        with self.motion_lock:
            due = self.motion.due(now)
            if self.broker.connected:  # else the state goes out on connecting, not a stale queued OFF
                for pub in due:
                    self.broker.publish(pub)

    def motion_states(self) -> dict[str, str]:
        """``ON`` / ``OFF`` per camera seen so far."""
        with self.motion_lock:
            return {camera: self.motion.state(camera) for camera in self.motion.on}
