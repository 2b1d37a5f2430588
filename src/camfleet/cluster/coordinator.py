"""A coordinator: watches the fleet's registry and heartbeats, and competes for leadership.

Several coordinators run at once; one leads (:mod:`.elector`), the others
stand by and take over when its lease expires. Every coordinator keeps the
membership table (:mod:`.membership`) from KV watches, so a new agent is
known as soon as it registers and a dead one once its heartbeat is gone for
TTL + grace, with no "refresh" call.

The in-process API (:meth:`Coordinator.snapshot`, :meth:`Coordinator.is_leader`)
is safe from any thread. Given the fleet's database (``store``), the leader
also places the cameras and writes each node's desired state
(:mod:`.leader`), and answers the control API on ``camfleet.ctl.<verb>``
(:mod:`.control`) while, and only while, it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from camfleet.redact import mask_text, mask_url

from .connection import NatsOptions, connect
from .election import Transition
from .elector import LeaderElector, LeaderInfo
from .elector_thread import ElectorThread
from .kv import Bucket, KvError, open_bucket
from .membership import Change, Member, Membership
from .registry import (
    ALIVE_BUCKETS,
    APPLIED_BUCKET,
    CTL_PREFIX,
    DESIRED_BUCKET,
    LEADER_BUCKET,
    NODES_BUCKET,
    STATUS_PREFIX,
    AppliedReport,
    FleetTiming,
    Heartbeat,
    NodeRecord,
    RecordError,
)

if TYPE_CHECKING:
    from camfleet.config import Config
    from camfleet.fleetstore.store import FleetStore

    from .leader import FleetLeader
    from .placement_types import PlacementSettings

__all__ = ["Coordinator", "CoordinatorSnapshot", "default_replicas"]

log = logging.getLogger("camfleet.cluster.coordinator")

SWEEP_S = 0.25
SPREAD_S = 5.0
"""Seconds between the leader's checks that the heartbeat streams are led by different servers."""


def default_replicas(client: Client) -> int:
    """3 when the server we reached knows other servers (a cluster), else 1."""
    return 3 if len(client.servers) >= 3 else 1


@dataclass(frozen=True)
class CoordinatorSnapshot:
    """What a coordinator knows now: its id, whether it leads, its term, the leader, the members.

    ``server``: the NATS server it is connected to (None while disconnected); ``at``: epoch seconds;
    ``revision``: the lease's revision at its last renewal while leading (grows with each renewal).
    """

    coordinator_id: str
    is_leader: bool
    term: int
    leader: LeaderInfo | None
    members: dict[str, Member] = field(default_factory=dict)
    at: float = 0.0
    server: str | None = None
    revision: int = 0


class Coordinator:
    """One coordinator process's fleet logic: membership from KV watches, leader election.

    ``on_change`` is called (in the coordinator's event loop) for each
    membership change and each change of role.
    """

    def __init__(self, options: NatsOptions, coordinator_id: str, timing: FleetTiming | None = None, *,
                 replicas: int | None = None,
                 on_change: Callable[[Change | Transition], None] | None = None,
                 store: FleetStore | None = None, base: Config | None = None,
                 placement: PlacementSettings | None = None) -> None:
        self.options = options
        self.store = store
        self.base = base
        self.placement = placement
        self.leader: FleetLeader | None = None
        # set once the registry's and the heartbeats' first values are read
        self._synced = (asyncio.Event(), asyncio.Event(), asyncio.Event())  # registry, both alive
        self.coordinator_id = coordinator_id
        self.timing = timing or FleetTiming()
        self._replicas = replicas
        self._on_change = on_change
        self._membership = Membership(self.timing)
        self._lock = threading.Lock()
        self._elector: LeaderElector | None = None
        self._client: Client | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.ready = threading.Event()  # set once connected, the buckets open and the watches started

    # ---------------------------------------------------------------- in-process API (any thread)
    def is_leader(self) -> bool:
        """Whether this coordinator leads now."""
        return self._elector is not None and self._elector.is_leader()

    def snapshot(self) -> CoordinatorSnapshot:
        """Role, term, leader and members, now."""
        elector = self._elector
        with self._lock:
            members = self._membership.members()
        leading = elector is not None and elector.is_leader()
        client = self._client
        server = (mask_url(client.connected_url.geturl())
                  if client is not None and client.is_connected and client.connected_url else None)
        return CoordinatorSnapshot(self.coordinator_id, leading, elector.term if elector and leading else 0,
                                   elector.leader() if elector else None, members, time.time(), server,
                                   elector.election.revision if elector and leading else 0)

    # ---------------------------------------------------------------- the loop
    async def run(self, stop: asyncio.Event) -> None:
        """Connect, open the buckets, watch and compete until ``stop``; raises ConnectionError."""
        client = await connect(NatsOptions(self.options.urls, self.options.creds, self.options.ca_file,
                                           name=f"camfleet-coordinator-{self.coordinator_id[:8]}"))
        self._client = client
        try:
            js = client.jetstream(timeout=2.0)
            replicas = self._replicas or default_replicas(client)
            buckets = await self._open(js, replicas, stop)
            if buckets is None:
                return
            nodes, alive, alive_b, _leader, desired, applied = buckets
            # the lease is renewed on a thread and connection of its own: a busy loop here (a burst of
            # agents, a pass over thousands of cameras) must never cost the leadership
            election = ElectorThread(self.options, self.coordinator_id, self.timing, replicas,
                                     self._transition)
            self._elector = await election.start(stop)
            if self._elector is None:
                return
            tasks = [asyncio.create_task(self._watch_nodes(nodes), name="watch-nodes"),
                     asyncio.create_task(self._watch_alive(alive, 0), name="watch-alive"),
                     asyncio.create_task(self._watch_alive(alive_b, 1), name="watch-alive-b"),
                     asyncio.create_task(self._sweep(stop), name="sweep"),
                     asyncio.create_task(self._spread_alive_leaders(client, stop), name="spread-alive")]
            if self.store is not None:
                from .leader import FleetLeader  # noqa: PLC0415 - the scheduler only where there is a database

                self.leader = FleetLeader(self.store, desired, self._members, self.is_leader, self.placement)
                tasks += [asyncio.create_task(self._watch_applied(applied), name="watch-applied"),
                          asyncio.create_task(self._lead(client, stop), name="lead")]
                await client.subscribe(f"{STATUS_PREFIX}.*", cb=self._on_status)
            tasks.append(asyncio.create_task(election.run(stop), name="elector"))
            self.ready.set()
            log.info("coordinator %s: watching the fleet at %s (buckets R%d)", self.coordinator_id,
                     self.options.shown, replicas)
            await stop.wait()
            for task in tasks[:-1]:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(tasks[-1], 7.0)  # the elector gives the lease up
            pending = set(tasks[:-1])
            while pending:
                _done, pending = await asyncio.wait(pending, timeout=1.0)
                for task in pending:  # a cancellation swallowed (Python 3.11's wait_for can, in a
                    task.cancel()  # KV watch that got a message at that moment): cancel again
        finally:
            with contextlib.suppress(Exception):  # never hang a stop on a server that is away
                await asyncio.wait_for(client.close(), 2.0)

    async def _open(self, js: JetStreamContext, replicas: int,
                    stop: asyncio.Event) -> tuple[Bucket, Bucket, Bucket, Bucket, Bucket, Bucket] | None:
        """The fleet's buckets, retried while JetStream is unavailable (a cluster electing); None: stopped."""
        delay = 0.25
        while not stop.is_set():
            try:
                return (await open_bucket(js, NODES_BUCKET, replicas=replicas, markers_ttl_s=None),
                        await open_bucket(js, ALIVE_BUCKETS[0], replicas=replicas),
                        await open_bucket(js, ALIVE_BUCKETS[1], replicas=replicas),
                        await open_bucket(js, LEADER_BUCKET, replicas=replicas),
                        await open_bucket(js, DESIRED_BUCKET, replicas=replicas, markers_ttl_s=None),
                        await open_bucket(js, APPLIED_BUCKET, replicas=replicas, markers_ttl_s=None))
            except KvError as exc:
                log.warning("cannot open the fleet's buckets: %s (again in %.1f s)", exc, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(2.0, delay * 2)
        return None

    def _transition(self, change: Transition) -> None:
        if self.leader is not None:
            self.leader.wake()
        if self._on_change is not None:
            self._on_change(change)

    def _members(self) -> dict[str, Member]:
        with self._lock:
            return self._membership.members()

    def _report(self, changes: list[Change]) -> None:
        for change in changes:
            log.info("member %s: %s -> %s (%s)", change.node_id, change.old or "unknown", change.new,
                     change.reason)
            if self.leader is not None:
                with self._lock:
                    member = self._membership.member(change.node_id)
                self.leader.member_changed(member, change.node_id, change.new)
            if self._on_change is not None:
                self._on_change(change)

    # ---------------------------------------------------------------- the leader's duties
    def _info(self) -> dict[str, Any]:
        e = self._elector
        leader = e.leader() if e is not None else None
        return {"coordinator_id": self.coordinator_id, "term": e.term if e is not None else 0,
                "hostname": leader.hostname if leader else None, "pid": leader.pid if leader else None}

    async def _lead(self, client: Client, stop: asyncio.Event) -> None:
        """While this coordinator leads: answer the control API and run the scheduler (term by term)."""
        from .control import ControlAPI  # noqa: PLC0415

        assert self.leader is not None
        leader = self.leader
        # a listing's page: half of what the server takes in one message (its max_payload, 1 MB by default)
        control = ControlAPI(leader, self._info, self.base, page_bytes=max(64 << 10, client.max_payload // 2))
        synced = asyncio.Event()

        async def both_synced() -> None:
            await self._synced[0].wait()
            await self._synced[1].wait()
            await self._synced[2].wait()
            synced.set()

        sync_task = asyncio.create_task(both_synced())
        warm: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                if not self.is_leader() or self._elector is None:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.1)
                    continue
                term = self._elector.term
                leader.leading = self._leading_in(term, stop)
                if warm is None:  # the validator's imports, loaded now rather than on the first apply's path
                    from .fleetconfig import warm_up  # noqa: PLC0415

                    warm = asyncio.create_task(asyncio.to_thread(warm_up))
                sub = await client.subscribe(f"{CTL_PREFIX}.*", cb=control.on_message)
                log.info("leader (term %d): answering %s.*", term, CTL_PREFIX)
                # the fleet's events into the database: one reader, on the leader only
                events = asyncio.create_task(self._consume_events(client), name="events-consumer")
                try:
                    await leader.lead(term, synced)
                finally:
                    events.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await events
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    log.info("leader (term %d): stopped answering %s.*", term, CTL_PREFIX)
        finally:
            sync_task.cancel()
            if warm is not None:
                warm.cancel()

    async def _consume_events(self, client: Client) -> None:
        """Run the events consumer (:mod:`.events_consumer`) until cancelled, restarted after a failure."""
        from .events_consumer import EventsConsumer  # noqa: PLC0415

        assert self.store is not None
        while True:
            try:
                await EventsConsumer(client, self.store.engine, replicas=self._replicas).run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the consumer's own retries gave up: start it again, not silently
                log.warning("fleet events consumer stopped (%s); starting it again in 2 s",
                            mask_text(repr(exc)))
                await asyncio.sleep(2.0)

    def _leading_in(self, term: int, stop: asyncio.Event) -> Callable[[], bool]:
        """Whether this coordinator still leads in ``term`` (a new term is a new leadership)."""
        return lambda: (not stop.is_set() and self.is_leader() and self._elector is not None
                        and self._elector.term == term)

    async def _watch_applied(self, bucket: Bucket) -> None:
        assert self.leader is not None
        while True:
            try:
                async for entry in bucket.watch():
                    if entry is None or entry.deleted:
                        continue
                    try:
                        report = AppliedReport.from_bytes(entry.value, entry.key)
                    except RecordError as exc:
                        log.error("applied reports: %s (ignored)", exc)
                        continue
                    if report.node_id == entry.key:
                        self.leader.applied_report(entry.key, report)
            except KvError as exc:
                log.warning("applied-report watch failed (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _on_status(self, msg: Msg) -> None:
        if self.leader is None or not self.is_leader():
            return
        node_id = msg.subject[len(STATUS_PREFIX) + 1:]
        try:
            data = json.loads(msg.data)
        except ValueError:
            return
        if isinstance(data, dict) and node_id:
            self.leader.node_status(node_id, data)

    async def _watch_nodes(self, bucket: Bucket) -> None:
        while True:
            try:
                async for entry in bucket.watch():
                    if entry is None:
                        self._synced[0].set()
                        continue
                    with self._lock:
                        if entry.deleted:
                            changes = self._membership.unregistered(entry.key)
                        else:
                            try:
                                record = NodeRecord.from_bytes(entry.value, entry.key)
                                if record.node_id != entry.key:
                                    raise RecordError(f"{NODES_BUCKET}/{entry.key}: holds the record of "
                                                      f"{record.node_id!r}")
                            except RecordError as exc:
                                log.error("registry: %s (ignored)", exc)
                                continue
                            changes = self._membership.registered(record)
                    self._report(changes)
            except KvError as exc:
                log.warning("registry watch failed (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _watch_alive(self, bucket: Bucket, index: int) -> None:
        while True:
            try:
                async for entry in bucket.watch():
                    if entry is None:
                        self._synced[1 + index].set()
                        continue
                    now = time.monotonic()
                    with self._lock:
                        if entry.deleted:
                            changes = self._membership.expired(entry.key, now, index)
                        else:
                            try:
                                beat = Heartbeat.from_bytes(entry.value, entry.key)
                                if beat.node_id != entry.key:
                                    raise RecordError(f"{ALIVE_BUCKETS[index]}/{entry.key}: beat of "
                                                      f"{beat.node_id!r}")
                            except RecordError as exc:
                                log.error("heartbeats: %s (ignored)", exc)
                                continue
                            changes = self._membership.beat(beat, now, index)
                    self._report(changes)
            except KvError as exc:
                log.warning("heartbeat watch failed (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _spread_alive_leaders(self, client: Client, stop: asyncio.Event) -> None:
        """While leading, keep the two heartbeat buckets' stream leaders on different NATS servers."""
        from .stream_leaders import spread_leaders  # noqa: PLC0415

        streams = [f"KV_{name}" for name in ALIVE_BUCKETS]
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), SPREAD_S)
            if stop.is_set() or not self.is_leader():
                continue
            try:
                moved = await spread_leaders(client, streams)
            except Exception as exc:  # a cluster electing, a server away: next time
                log.debug("heartbeat stream leaders not checked: %r", exc)
                continue
            if moved:
                log.info("heartbeat streams led by one server (%s): asked %s to elect another leader",
                         moved[0], moved[1])

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with self._lock:
                changes = self._membership.sweep(time.monotonic())
            self._report(changes)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_S)
