"""A coordinator: watches the fleet's registry and heartbeats, and competes for leadership.

Several coordinators run at once; one leads (:mod:`.elector`), the others
stand by and take over when its lease expires. Every coordinator keeps the
membership table (:mod:`.membership`) from KV watches, so a new agent is
known as soon as it registers and a dead one once its heartbeat is gone for
TTL + grace, with no "refresh" call.

The in-process API (:meth:`Coordinator.snapshot`, :meth:`Coordinator.is_leader`)
is safe from any thread; the HTTP API and the scheduler (placement, desired
state per node, fenced by :attr:`CoordinatorSnapshot.term`) come next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from nats.aio.client import Client
from nats.js import JetStreamContext

from camfleet.redact import mask_url

from .connection import NatsOptions, connect
from .election import Transition
from .elector import LeaderElector, LeaderInfo
from .kv import Bucket, KvError, open_bucket
from .membership import Change, Member, Membership
from .registry import (
    ALIVE_BUCKET,
    LEADER_BUCKET,
    NODES_BUCKET,
    FleetTiming,
    Heartbeat,
    NodeRecord,
    RecordError,
)

__all__ = ["Coordinator", "CoordinatorSnapshot", "default_replicas"]

log = logging.getLogger("camfleet.cluster.coordinator")

SWEEP_S = 0.25


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
                 on_change: Callable[[Change | Transition], None] | None = None) -> None:
        self.options = options
        self.coordinator_id = coordinator_id
        self.timing = timing or FleetTiming()
        self._replicas = replicas
        self._on_change = on_change
        self._membership = Membership(self.timing)
        self._lock = threading.Lock()
        self._elector: LeaderElector | None = None
        self._client: Client | None = None
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
            nodes, alive, leader = buckets
            self._elector = LeaderElector(leader, self.coordinator_id, self.timing, self._transition)
            tasks = [asyncio.create_task(self._watch_nodes(nodes), name="watch-nodes"),
                     asyncio.create_task(self._watch_alive(alive), name="watch-alive"),
                     asyncio.create_task(self._sweep(stop), name="sweep"),
                     asyncio.create_task(self._elector.run(stop), name="elector")]
            self.ready.set()
            log.info("coordinator %s: watching the fleet at %s (buckets R%d)", self.coordinator_id,
                     self.options.shown, replicas)
            await stop.wait()
            for task in tasks[:-1]:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(tasks[-1], 5.0)  # the elector gives the lease up
            for task in tasks[:-1]:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    async def _open(self, js: JetStreamContext, replicas: int,
                    stop: asyncio.Event) -> tuple[Bucket, Bucket, Bucket] | None:
        """The three buckets, retried while JetStream is unavailable (a cluster electing); None: stopped."""
        delay = 0.25
        while not stop.is_set():
            try:
                return (await open_bucket(js, NODES_BUCKET, replicas=replicas, markers_ttl_s=None),
                        await open_bucket(js, ALIVE_BUCKET, replicas=replicas),
                        await open_bucket(js, LEADER_BUCKET, replicas=replicas))
            except KvError as exc:
                log.warning("cannot open the fleet's buckets: %s (again in %.1f s)", exc, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(2.0, delay * 2)
        return None

    def _transition(self, change: Transition) -> None:
        if self._on_change is not None:
            self._on_change(change)

    def _report(self, changes: list[Change]) -> None:
        for change in changes:
            log.info("member %s: %s -> %s (%s)", change.node_id, change.old or "unknown", change.new,
                     change.reason)
            if self._on_change is not None:
                self._on_change(change)

    async def _watch_nodes(self, bucket: Bucket) -> None:
        while True:
            try:
                async for entry in bucket.watch():
                    if entry is None:
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

    async def _watch_alive(self, bucket: Bucket) -> None:
        while True:
            try:
                async for entry in bucket.watch():
                    if entry is None:
                        continue
                    now = time.monotonic()
                    with self._lock:
                        if entry.deleted:
                            changes = self._membership.expired(entry.key, now)
                        else:
                            try:
                                beat = Heartbeat.from_bytes(entry.value, entry.key)
                                if beat.node_id != entry.key:
                                    raise RecordError(f"{ALIVE_BUCKET}/{entry.key}: beat of {beat.node_id!r}")
                            except RecordError as exc:
                                log.error("heartbeats: %s (ignored)", exc)
                                continue
                            changes = self._membership.beat(beat, now)
                    self._report(changes)
            except KvError as exc:
                log.warning("heartbeat watch failed (%s); again in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _sweep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with self._lock:
                changes = self._membership.sweep(time.monotonic())
            self._report(changes)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), SWEEP_S)
