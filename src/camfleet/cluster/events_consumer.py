"""The coordinator's side of the fleet's events: ``CAMFLEET_EVENTS`` into the central database.

:class:`EventsConsumer` reads the stream through a durable JetStream pull consumer
(``camfleet-events-db`` unless named otherwise), in stream order, which is each node's
journal order. Each fetched batch is written in one transaction
(:func:`camfleet.fleetstore.events.store_batch`: idempotent upserts) and acknowledged only
after the commit: a coordinator killed in between gets the batch again (at least once), and
writing it again changes nothing. A database outage holds the batch and retries it; a NATS
outage is waited out (the consumer is durable and replicated like the stream).

Fencing: :class:`TokenBook` learns each camera's assignment tokens by watching the
``camfleet_desired`` bucket (every node's :class:`~camfleet.cluster.registry.DesiredNode`),
with the time JetStream stored the write that carried each token. A message is **stale**
when a newer token of its camera had been written before the message was published
(both times are the servers' own). Stale messages are kept in ``fleet_events_rejected``,
not in the live tables, and counted. So an event its node published while it held the
camera is stored even when the camera moved before the consumer read it (a node that died
with its events in the stream), and one published after the camera moved elsewhere (a
partitioned node that kept running) is not. A desired state written under an older leader
term than one already seen is ignored (a deposed leader's late write). The two times come
from the servers leading the bucket and the stream: on separate machines their clocks must
agree (NTP) to well under the time a move takes. A message carrying no token counts as
token 0 (stale once its camera had any assignment).

Run it on the leader coordinator only (start on taking the lead, cancel on losing it): one
reader keeps each node's order. Two at once (a handover) are safe, only wasteful: the
upserts keep the newest journal sequence per event whatever order they arrive in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy import Engine

from camfleet.events.sink import is_outage
from camfleet.fleetstore.events import Incoming, StoreCounts, create_events_tables, store_batch
from camfleet.redact import mask_text
from camfleet.vocabulary import decode

from .events_sink import CAMERA_HEADER, MSG_ID_HEADER, TOKEN_HEADER, ensure_events_stream, message_camera
from .registry import DESIRED_BUCKET, EVENTS_STREAM, EVENTS_SUBJECT_PREFIX, DesiredNode, RecordError

__all__ = ["DEFAULT_DURABLE", "ConsumerSettings", "DesiredWatcher", "EventsConsumer", "TokenBook"]

log = logging.getLogger("camfleet.cluster.events")

DEFAULT_DURABLE = "camfleet-events-db"
_KEEP_TOKENS = 16


class TokenBook:
    """Each camera's assignment tokens and since when (epoch s) each was known; pure logic.

    Keeps the ``_KEEP_TOKENS`` highest tokens per camera (older ones can only make fewer
    messages stale than the newer ones kept already do).
    """

    def __init__(self) -> None:
        self._tokens: dict[str, dict[int, float]] = {}

    def learn(self, camera: str, token: int, since: float) -> None:
        """Record that ``camera`` was assigned with ``token`` by a write stored at ``since`` (epoch s)."""
        known = self._tokens.setdefault(camera, {})
        if token in known:
            known[token] = min(known[token], since)
            return
        known[token] = since
        if len(known) > _KEEP_TOKENS:
            del known[min(known)]

    def current(self, camera: str) -> int | None:
        """The camera's highest token known (None: never assigned as far as this book knows)."""
        known = self._tokens.get(camera)
        return max(known) if known else None

    def stale(self, camera: str, token: int | None, published_at: float) -> int | None:
        """The newer token that makes a message stale, or None when it is not stale.

        The message is of ``camera``, carries ``token`` (None counts as 0) and was published
        at ``published_at`` (epoch s).
        """
        have = token if token is not None else 0
        newer = [t for t, since in self._tokens.get(camera, {}).items() if t > have and since <= published_at]
        return max(newer) if newer else None


class DesiredWatcher:
    """Feeds a :class:`TokenBook` from the ``camfleet_desired`` bucket (an ordered consumer).

    :attr:`ready` is set once the values stored when it started have been read (or the bucket
    does not exist yet: no camera was ever placed). A bucket created later is picked up
    (looked for every ``retry_s`` seconds).
    """

    def __init__(self, js: JetStreamContext, book: TokenBook, *, retry_s: float = 1.0) -> None:
        self._js = js
        self.book = book
        self.ready = asyncio.Event()
        self._retry_s = retry_s
        self._stream = f"KV_{DESIRED_BUCKET}"
        self._prefix = f"$KV.{DESIRED_BUCKET}."
        self._catch_up_to = 0
        self._term = 0
        self.bad_records = 0
        self.old_terms = 0

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            try:
                info = await self._js.stream_info(self._stream)
            except nats.js.errors.NotFoundError:
                self.ready.set()  # no desired state ever written: no token to be stale against
                await asyncio.sleep(self._retry_s)
                continue
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("fleet events: cannot look up %s yet: %s", self._stream, mask_text(repr(exc)))
                await asyncio.sleep(self._retry_s)
                continue
            self._catch_up_to = int(info.state.last_seq or 0)
            if not info.state.messages:
                self.ready.set()
            try:
                sub = await self._js.subscribe(self._prefix + ">", stream=self._stream, ordered_consumer=True,
                                               deliver_policy=DeliverPolicy.ALL)
            except (TimeoutError, nats.errors.Error) as exc:
                log.warning("fleet events: cannot watch %s: %s", self._stream, mask_text(repr(exc)))
                await asyncio.sleep(self._retry_s)
                continue
            try:
                async for msg in sub.messages:
                    self._take(msg)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def _take(self, msg: Msg) -> None:
        meta = msg.metadata
        seq = int(meta.sequence.stream)
        since = meta.timestamp.timestamp()
        headers = msg.headers or {}
        key = msg.subject[len(self._prefix):]
        if msg.data and "KV-Operation" not in headers:
            try:
                desired = DesiredNode.from_bytes(msg.data, key)
            except RecordError as exc:
                self.bad_records += 1
                log.error("fleet events: %s", exc)
            else:
                if desired.term < self._term:  # a deposed leader's late write: agents ignore it too
                    self.old_terms += 1
                else:
                    self._term = desired.term
                    for camera, placed in desired.cameras.items():
                        self.book.learn(camera, int(placed.token), since)
        if seq >= self._catch_up_to:
            self.ready.set()


@dataclass(frozen=True)
class ConsumerSettings:
    """How the consumer works.

    ``batch`` messages per fetch and transaction, ``fetch_wait_s`` seconds a fetch waits for
    messages, ``ack_wait_s`` seconds before JetStream redelivers an unacknowledged message,
    ``backoff_s`` waits (seconds) between retries while NATS or the database is down (the last
    repeats), ``ready_timeout_s`` seconds to wait for the desired state before consuming anyway.
    """

    batch: int = 256
    fetch_wait_s: float = 1.0
    ack_wait_s: float = 30.0
    backoff_s: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 5.0)
    ready_timeout_s: float = 10.0


@dataclass
class _Counts:
    consumed: int = 0
    live: int = 0
    stale: int = 0
    malformed: int = 0
    redelivered: int = 0
    db_retries: int = 0
    nats_retries: int = 0
    dropped: int = 0
    pending: int = 0
    last_error: str = ""
    by_node: dict[str, int] = field(default_factory=dict)


class EventsConsumer:
    """Consumes ``CAMFLEET_EVENTS`` into ``engine``'s fleet event tables until cancelled.

    ``client``: a connected NATS client (the coordinator's); ``replicas``: copies of the stream
    when this consumer creates it (None: 3 when the server knows two others, else 1);
    ``durable``: the consumer's name (the same on every coordinator).
    """

    def __init__(self, client: Client, engine: Engine, *, durable: str = DEFAULT_DURABLE,
                 replicas: int | None = None, settings: ConsumerSettings | None = None) -> None:
        self._client = client
        self._js = client.jetstream()
        self._engine = engine
        self.durable = durable
        self._replicas = replicas
        self.settings = settings or ConsumerSettings()
        self.book = TokenBook()
        self.watcher = DesiredWatcher(self._js, self.book)
        self.counts = _Counts()
        self.consuming = asyncio.Event()
        """Set once the stream and the durable consumer are there and reading began."""
        self.on_stored: Callable[[StoreCounts], None] | None = None
        """Called (in the loop) after each committed batch; for tests and metrics."""

    def stats(self) -> dict[str, Any]:
        """Counters of this run.

        ``consumed`` messages, ``live`` states stored, ``stale`` and ``malformed`` ones rejected,
        ``redelivered``, ``db_retries``/``nats_retries`` (outage retries), ``dropped`` (unstorable,
        terminated), ``pending`` (left in the stream at the last fetch), ``last_error``.
        """
        c = self.counts
        return {"consumed": c.consumed, "live": c.live, "stale": c.stale, "malformed": c.malformed,
                "redelivered": c.redelivered, "db_retries": c.db_retries, "nats_retries": c.nats_retries,
                "dropped": c.dropped, "pending": c.pending, "last_error": c.last_error}

    async def run(self) -> None:
        """Create the tables, stream and durable consumer as needed, then consume until cancelled."""
        await asyncio.to_thread(create_events_tables, self._engine)
        watch = asyncio.create_task(self.watcher.run(), name="camfleet-events-desired-watch")
        try:
            try:
                await asyncio.wait_for(self.watcher.ready.wait(), self.settings.ready_timeout_s)
            except TimeoutError:
                log.warning("fleet events: the desired state was not read within %.0f s; consuming anyway "
                            "(stale tokens are recognised once it is)", self.settings.ready_timeout_s)
            sub = await self._subscribe()
            self.consuming.set()
            attempt = 0
            while True:
                try:
                    msgs = await sub.fetch(self.settings.batch, timeout=self.settings.fetch_wait_s)
                except nats.errors.TimeoutError:
                    attempt = 0
                    continue
                except (nats.errors.Error, OSError) as exc:
                    self.counts.nats_retries += 1
                    self.counts.last_error = mask_text(repr(exc))
                    await asyncio.sleep(self._backoff(attempt))
                    attempt += 1
                    if attempt % 5 == 0:  # the consumer (or the stream) may be gone: bind or create again
                        sub = await self._subscribe()
                    continue
                attempt = 0
                if msgs:
                    await self._handle(msgs)
        finally:
            self.consuming.clear()
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watch

    def _backoff(self, attempt: int) -> float:
        b = self.settings.backoff_s
        return b[min(attempt, len(b) - 1)]

    async def _subscribe(self) -> Any:
        attempt = 0
        while True:
            try:
                replicas = self._replicas
                if replicas is None:
                    replicas = 3 if len(self._client.servers) >= 3 else 1
                await ensure_events_stream(self._js, replicas)
                config = ConsumerConfig(durable_name=self.durable, ack_policy=AckPolicy.EXPLICIT,
                                        deliver_policy=DeliverPolicy.ALL, ack_wait=self.settings.ack_wait_s,
                                        max_ack_pending=max(1000, 4 * self.settings.batch),
                                        filter_subject=f"{EVENTS_SUBJECT_PREFIX}.*")
                return await self._js.pull_subscribe(f"{EVENTS_SUBJECT_PREFIX}.*", durable=self.durable,
                                                     stream=EVENTS_STREAM, config=config)
            except (ConnectionError, TimeoutError, nats.errors.Error) as exc:
                self.counts.nats_retries += 1
                self.counts.last_error = mask_text(repr(exc))
                log.warning("fleet events: cannot open the consumer yet: %s", self.counts.last_error)
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1

    # ------------------------------------------------------------------ one batch

    def parse(self, msg: Msg) -> Incoming:
        """The message as an :class:`Incoming`, judged: live, stale (newer token known) or malformed."""
        meta = msg.metadata
        published_at = meta.timestamp.timestamp()
        stream_seq = int(meta.sequence.stream)
        if meta.num_delivered and meta.num_delivered > 1:
            self.counts.redelivered += 1
        self.counts.pending = int(meta.num_pending or 0)
        node = msg.subject[len(EVENTS_SUBJECT_PREFIX) + 1:]
        headers = msg.headers or {}
        camera = str(headers.get(CAMERA_HEADER, ""))[:255]
        raw = msg.data.decode("utf-8", "replace")
        token: int | None = None
        seq = -stream_seq  # where the message id is unusable: still unique per stream message
        problem = ""
        msg_id = str(headers.get(MSG_ID_HEADER, ""))
        id_node, _, id_seq = msg_id.rpartition(":")
        if id_node != node or not id_seq.isdigit():
            problem = f"message id {msg_id[:80]!r} is not {node}:<journal seq>"
        else:
            seq = int(id_seq)
        token_text = headers.get(TOKEN_HEADER)
        if token_text is not None:
            if str(token_text).isdigit():
                token = int(token_text)
            else:
                problem = problem or f"{TOKEN_HEADER} {str(token_text)[:40]!r} is not a number"
        try:
            message = decode(msg.data)
        except (ValueError, KeyError, TypeError) as exc:
            return Incoming(node, seq, camera, None, token, published_at, raw=raw,
                            reason=f"malformed: {str(exc)[:200]}")
        body_camera = message_camera(message)
        if camera and camera != body_camera:
            problem = problem or f"{CAMERA_HEADER} {camera!r} is not the message's camera {body_camera!r}"
        if problem:
            return Incoming(node, seq, body_camera, message, token, published_at, raw=raw,
                            reason=f"malformed: {problem}")
        newer = self.book.stale(body_camera, token, published_at)
        if newer is not None:
            return Incoming(node, seq, body_camera, message, token, published_at, reason="stale-token",
                            current_token=newer)
        return Incoming(node, seq, body_camera, message, token, published_at)

    async def _handle(self, msgs: list[Msg]) -> None:
        batch = [self.parse(m) for m in msgs]
        attempt = 0
        while True:
            try:
                counts = await asyncio.to_thread(store_batch, self._engine, batch)
                break
            except Exception as exc:
                if not is_outage(exc):
                    await self._one_by_one(msgs, batch)
                    return
                self.counts.db_retries += 1
                self.counts.last_error = mask_text(str(exc))
                log.warning("fleet events: database unreachable (attempt %d): %s", attempt + 1,
                            self.counts.last_error)
                for m in msgs:  # keep them ours while the database is away
                    with contextlib.suppress(Exception):
                        await m.in_progress()
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1
        await self._done(msgs, batch, counts)

    async def _one_by_one(self, msgs: list[Msg], batch: list[Incoming]) -> None:
        """A batch the database refused for something other than an outage: find the message at fault."""
        for m, item in zip(msgs, batch, strict=True):
            try:
                counts = await asyncio.to_thread(store_batch, self._engine, [item])
            except Exception as exc:
                if is_outage(exc):
                    return  # not acknowledged: redelivered after ack_wait and retried
                self.counts.dropped += 1
                log.error("fleet events: cannot store %s:%d (%s), dropped: %s", item.node, item.seq,
                          item.camera, mask_text(str(exc)))
                with contextlib.suppress(Exception):
                    await m.term()
                continue
            await self._done([m], [item], counts)

    async def _done(self, msgs: list[Msg], batch: list[Incoming], counts: StoreCounts) -> None:
        c = self.counts
        c.consumed += len(batch)
        c.live += counts.live
        for item in batch:
            if item.reason == "stale-token":
                c.stale += 1
                log.warning("fleet events: rejected %s:%d of camera %s: token %s, camera's token %s",
                            item.node, item.seq, item.camera, item.token, item.current_token)
            elif item.reason:
                c.malformed += 1
                log.error("fleet events: rejected %s:%d: %s", item.node, item.seq, item.reason)
            c.by_node[item.node] = c.by_node.get(item.node, 0) + 1
        for m in msgs:
            try:
                await m.ack()
            except Exception as exc:  # redelivered later; storing it again changes nothing
                log.debug("fleet events: ack failed: %r", exc)
        if self.on_stored is not None:
            self.on_stored(counts)

