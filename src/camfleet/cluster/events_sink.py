"""The agent's outbox sink to the fleet: each outbox message becomes one message of ``CAMFLEET_EVENTS``.

The pump (:mod:`camfleet.events.pump`) calls :meth:`FleetEventsSink.write_entries` from its
own thread with a batch in journal order. Each message is published on
``camfleet.events.<node>`` with

* ``Nats-Msg-Id: <node>:<journal seq>``: JetStream drops a message whose id it stored
  within the stream's duplicate window (:data:`DUPLICATE_WINDOW_S`), so a batch sent again
  after a crash between the publish and the cursor's save is stored once;
* ``Camfleet-Token``: the camera's fencing token at the node when the batch is sent (the
  ``tokens`` callable; once a camera is no longer placed here, the last token it had, so
  the ends of its events still carry the assignment they belong to), absent when the node
  never had one for it;
* ``Camfleet-Camera``: the camera's name.

:meth:`~FleetEventsSink.write_entries` returns only once JetStream acknowledged every
message (stored on a majority of the stream's replicas), so the pump's cursor moves only
past what the fleet has. A NATS outage raises :class:`ConnectionError`: the pump keeps the
batch and retries it with back-off (nothing lost up to the journal's bounds).

The sink keeps its own NATS connection in a background asyncio loop (a daemon thread),
because the pump calls it from a plain thread.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from camfleet.redact import mask_text
from camfleet.vocabulary import EventMessage, OutboxMessage, SegmentMessage, encode

from .connection import NatsOptions, connect
from .registry import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX, DesiredNode, events_subject

__all__ = [
    "CAMERA_HEADER",
    "DUPLICATE_WINDOW_S",
    "MSG_ID_HEADER",
    "TOKEN_HEADER",
    "EventsStreamLimits",
    "FleetEventsSink",
    "TokenView",
    "ensure_events_stream",
    "message_camera",
]

log = logging.getLogger("camfleet.cluster.events")

MSG_ID_HEADER = "Nats-Msg-Id"
TOKEN_HEADER = "Camfleet-Token"
CAMERA_HEADER = "Camfleet-Camera"

DUPLICATE_WINDOW_S = 300.0
"""How long (seconds) JetStream remembers a message id: a re-send within it is stored once.

Past it a re-send is stored again and the coordinator's upsert (by event id, newer journal
sequence wins) absorbs it; five minutes covers an agent restarted by its supervisor."""

_NODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_T = TypeVar("_T")


@dataclass(frozen=True)
class EventsStreamLimits:
    """Limits of the ``CAMFLEET_EVENTS`` stream when it is created (an existing stream keeps its own).

    ``max_age_s`` seconds and ``max_bytes`` bytes of history (the oldest messages go first:
    a coordinator that stays away longer than that loses them), ``max_msg_bytes`` per message,
    ``duplicate_window_s`` seconds of message-id memory (at least two minutes).
    """

    max_age_s: float = 7 * 24 * 3600.0
    max_bytes: int = 1 << 30
    max_msg_bytes: int = 1 << 20
    duplicate_window_s: float = DUPLICATE_WINDOW_S

    def __post_init__(self) -> None:
        if self.duplicate_window_s < 120.0:
            raise ValueError(f"events stream: duplicate window {self.duplicate_window_s} s is under "
                             "2 minutes")
        if self.max_age_s < self.duplicate_window_s:
            raise ValueError(f"events stream: max age {self.max_age_s} s is shorter than the duplicate "
                             f"window {self.duplicate_window_s} s")
        if self.max_bytes < self.max_msg_bytes or self.max_msg_bytes < 1024:
            raise ValueError(f"events stream: max bytes {self.max_bytes} / max message bytes "
                             f"{self.max_msg_bytes}: need 1024 <= message <= stream")


async def ensure_events_stream(js: JetStreamContext, replicas: int,
                               limits: EventsStreamLimits | None = None) -> None:
    """Create ``CAMFLEET_EVENTS`` (file storage, ``replicas`` copies) unless it exists; idempotent.

    Raises :class:`ConnectionError` when no server answers or the server refuses (e.g. fewer
    servers than ``replicas``).
    """
    limits = limits or EventsStreamLimits()
    try:
        await js.stream_info(EVENTS_STREAM)
        return
    except nats.js.errors.NotFoundError:
        pass
    except (TimeoutError, nats.errors.Error) as exc:
        raise ConnectionError(f"stream {EVENTS_STREAM}: cannot look it up: {exc!r}") from None
    config = StreamConfig(name=EVENTS_STREAM, subjects=[f"{EVENTS_SUBJECT_PREFIX}.*"],
                          retention=RetentionPolicy.LIMITS, discard=DiscardPolicy.OLD,
                          storage=StorageType.FILE, num_replicas=replicas, max_age=limits.max_age_s,
                          max_bytes=limits.max_bytes, max_msg_size=limits.max_msg_bytes,
                          duplicate_window=limits.duplicate_window_s)
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        try:  # created by another process meanwhile (with settings of its own: kept)
            await js.stream_info(EVENTS_STREAM)
        except (TimeoutError, nats.errors.Error) as exc:
            raise ConnectionError(f"stream {EVENTS_STREAM}: cannot create it ({replicas} replicas): "
                                  f"{exc!r}") from None
    except (TimeoutError, nats.errors.Error) as exc:
        raise ConnectionError(f"stream {EVENTS_STREAM}: cannot create it ({replicas} replicas): "
                              f"{exc!r}") from None


class TokenView:
    """A :class:`FleetEventsSink`'s ``tokens``: each camera's token in the desired state applied.

    The agent calls :meth:`update` with each :class:`~camfleet.cluster.registry.DesiredNode` it
    applies (from its asyncio loop); the pump's thread reads it (a dict replaced whole, never
    mutated, so no lock is needed).
    """

    def __init__(self) -> None:
        self._tokens: dict[str, int] = {}

    def update(self, desired: DesiredNode) -> None:
        """Take the tokens of ``desired`` (the state now applied on this node)."""
        self._tokens = {name: int(camera.token) for name, camera in desired.cameras.items()}

    def __call__(self, camera: str) -> int | None:
        """The camera's fencing token now, or None when this node does not run it for the fleet."""
        return self._tokens.get(camera)


def message_camera(message: OutboxMessage) -> str:
    """The camera an outbox message is about."""
    if isinstance(message, EventMessage):
        return message.event.camera
    if isinstance(message, SegmentMessage):
        return message.segment.camera
    return message.span.camera


class FleetEventsSink:
    """Publishes the node's outbox to ``CAMFLEET_EVENTS``; ``name`` ``fleet`` keys its cursor.

    ``node_id`` names the subject and the message ids (a NATS subject token); ``tokens``
    gives a camera's fencing token now (None when the node runs no fleet assignment of it);
    ``replicas``: copies of the stream when this sink creates it (None: 3 when the server
    knows two others, else 1); ``publish_timeout_s`` bounds the wait for each batch's
    acknowledgements (seconds). Call :meth:`close` when done.
    """

    from_tail = True
    """A node that joins the fleet sends what happens from then on, not its history as a lone node."""
    backoff_s = (0.2, 0.5, 1.0, 2.0, 5.0)
    """Seconds between retries of a batch while NATS is unreachable."""

    def __init__(self, options: NatsOptions, node_id: str, tokens: Callable[[str], int | None], *,
                 replicas: int | None = None, limits: EventsStreamLimits | None = None,
                 publish_timeout_s: float = 10.0, name: str = "fleet") -> None:
        if not _NODE_RE.match(node_id):
            raise ValueError(f"fleet events sink: node id {node_id!r} is not a NATS subject token "
                             "(letters, digits, '-' and '_')")
        self.name = name
        self.node_id = node_id
        self.subject = events_subject(node_id)
        self._options = options
        self._tokens = tokens
        self._replicas = replicas
        self._limits = limits or EventsStreamLimits()
        self._timeout = publish_timeout_s
        self._last_tokens: dict[str, int] = {}
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._stream_ready = False
        self._closed = False
        self.counts = {"published": 0, "duplicates": 0, "failed": 0, "untokened": 0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name=f"camfleet-events-sink-{name}")
        self._thread.start()

    # ------------------------------------------------------------------ OutboxSink

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        """Refuse: this sink needs the journal's sequence numbers (the pump calls :meth:`write_entries`)."""
        raise TypeError("FleetEventsSink takes (journal seq, message) pairs: write_entries()")

    def write_entries(self, entries: Sequence[tuple[int, OutboxMessage]]) -> None:
        """Publish ``(journal seq, message)`` pairs in order; returns once JetStream stored them all.

        Raises :class:`ConnectionError` while NATS is unreachable or does not acknowledge in time
        (the pump retries the whole batch; the message ids make the re-sent ones duplicates).
        """
        if self._closed:
            raise ConnectionError("fleet events sink: closed")
        prepared = [(seq, m, self._token_of(message_camera(m))) for seq, m in entries]
        try:
            self._call(self._publish_all(prepared), self._timeout + 5.0)
        except ConnectionError:
            self.counts["failed"] += 1
            raise

    def stats(self) -> dict[str, Any]:
        """Its counters for the node's status.

        ``published`` (stored), ``duplicates`` (dropped by JetStream as re-sends), ``failed``
        batches, ``untokened`` messages sent without a token, ``connected`` (0/1).
        """
        client = self._client
        return {**self.counts, "connected": int(client is not None and client.is_connected)}

    def close(self, timeout: float = 5.0) -> None:
        """Drain and close the NATS connection and stop the loop thread (what is unsent stays journalled)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self._disconnect(), timeout)
        except ConnectionError as exc:
            log.debug("fleet events sink: close: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    # ------------------------------------------------------------------ internals

    def _token_of(self, camera: str) -> int | None:
        token = self._tokens(camera)
        if token is not None:
            self._last_tokens[camera] = token
            return token
        last = self._last_tokens.get(camera)
        if last is None:
            self.counts["untokened"] += 1
        return last

    def _call(self, coro: Awaitable[_T], timeout: float) -> _T:
        """Run ``coro`` on the sink's loop and wait for it; ConnectionError on any failure or timeout."""
        future: Future[_T] = asyncio.run_coroutine_threadsafe(_as_coroutine(coro), self._loop)
        try:
            return future.result(timeout)
        except ConnectionError:
            raise
        except TimeoutError:
            future.cancel()
            raise ConnectionError(f"fleet events: NATS did not answer within {timeout:.0f} s") from None
        except (nats.errors.Error, OSError) as exc:
            raise ConnectionError(f"fleet events: {mask_text(repr(exc))}") from None

    async def _jetstream(self) -> JetStreamContext:
        if self._client is None:
            # the first connection fails fast (an outage): the pump retries with back-off
            self._client = await connect(self._options, timeout_s=min(self._timeout, 5.0))
            self._js = self._client.jetstream(timeout=self._timeout)
        assert self._js is not None
        if not self._stream_ready:
            replicas = self._replicas
            if replicas is None:
                replicas = 3 if len(self._client.servers) >= 3 else 1
            await ensure_events_stream(self._js, replicas, self._limits)
            self._stream_ready = True
        return self._js

    async def _publish_all(self, prepared: Sequence[tuple[int, OutboxMessage, int | None]]) -> None:
        js = await self._jetstream()
        # one at a time, each acknowledged before the next leaves: were they pipelined, one lost in
        # an outage while the next got through would be stored after it on the retry, out of order
        for done, (seq, message, token) in enumerate(prepared):
            headers = {MSG_ID_HEADER: f"{self.node_id}:{seq}", CAMERA_HEADER: message_camera(message)}
            if token is not None:
                headers[TOKEN_HEADER] = str(token)
            try:
                ack = await js.publish(self.subject, encode(message).encode(), timeout=self._timeout,
                                       stream=EVENTS_STREAM, headers=headers)
            except (TimeoutError, nats.errors.Error) as exc:
                self._stream_ready = False  # the stream may have been deleted: look again on the retry
                if isinstance(exc, nats.js.errors.BadRequestError | nats.errors.MaxPayloadError):
                    # the message's fault (e.g. over the size limit), not an outage: the pump isolates it
                    raise ValueError(f"fleet events: JetStream refused a message: {mask_text(repr(exc))}") \
                        from None
                raise ConnectionError(f"fleet events: {done} of {len(prepared)} stored, then no "
                                      f"acknowledgement: {mask_text(repr(exc))}") from None
            self.counts["duplicates" if ack.duplicate else "published"] += 1

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.drain()
            except Exception as exc:  # closing a connection that is gone; nothing more to do
                log.debug("fleet events sink: drain: %r", exc)


async def _as_coroutine(awaitable: Awaitable[_T]) -> _T:
    return await awaitable
