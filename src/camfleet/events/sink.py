"""What the pump delivers to: the :class:`OutboxSink` protocol, and how to tell an outage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from camfleet.store.errors import StoreError
from camfleet.vocabulary import OutboxMessage


class OutboxSink(Protocol):
    """A destination of the outbox; ``name`` keys its cursor in the journal (keep it stable).

    :meth:`write` must be an idempotent upsert keyed by :func:`camfleet.vocabulary.message_key`
    (a batch may be delivered again after a crash) and return only once the batch is durable
    there. It raises to refuse: see :func:`is_outage` for which errors are retried. The pump
    calls it from the sink's own thread: a slow or unreachable sink holds up no other.

    Optional attributes the pump honours when a sink has them:

    * ``from_tail: bool`` -- a sink that was not part of the node's previous run (new, or
      configured again after a while without it) starts at the journal's end: an MQTT broker
      or a webhook added today gets today's events, not the history. One that was resumes
      where it stopped (see :meth:`~camfleet.events.journal.Journal.register_sinks`);
    * ``backoff_s: Sequence[float]`` -- its own waits (seconds) between retries during an
      outage (default :data:`~camfleet.events.pump.BACKOFF_S`; the last repeats);
    * ``write_entries(entries: Sequence[tuple[int, OutboxMessage]])`` -- called instead of
      :meth:`write` with each message's journal sequence number (unique and never reused in
      one journal), for a sink that deduplicates by it (:mod:`camfleet.cluster.events_sink`);
    * ``stats() -> dict[str, float | int | str]`` -- its own delivery counters, shown with the
      pump's per-sink ones in the node's status and ``/metrics`` (``camfleet_sink_<key>``).
    """

    name: str

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        """Store ``messages`` (in order; the later state of one key wins)."""
        ...


def is_outage(exc: BaseException) -> bool:
    """Whether a sink failure looks like its destination being unreachable (retry the same batch).

    Connection loss, a database that is down or locked, and OS-level I/O errors count; anything
    else (a constraint, a bad value, a bug) is the message's fault.
    """
    cause = exc.__cause__ if isinstance(exc, StoreError) and exc.__cause__ is not None else exc
    if isinstance(cause, OperationalError | InterfaceError):
        return True
    if isinstance(cause, DBAPIError) and bool(cause.connection_invalidated):
        return True
    return isinstance(cause, ConnectionError | TimeoutError)
