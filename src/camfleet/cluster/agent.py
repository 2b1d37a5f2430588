"""The agent: one machine's :class:`~camfleet.runtime.Node` as a member of the fleet.

It registers a :class:`~camfleet.cluster.registry.NodeRecord` (identity,
hardware, measured capacity), beats into the heartbeat bucket (each beat
expires ``heartbeat_ttl_s`` later, so a dead agent's key disappears on its
own), publishes the node's status every ``status_s`` seconds, and lets a
:class:`~camfleet.cluster.desired.DesiredStateSource` drive the node through
:class:`~camfleet.runtime.control.NodeControl`. A clean stop sends a last
``leaving`` beat so the coordinators need not wait for the expiry.

Fencing: the node's cameras run only while its lease holds
(:class:`~camfleet.cluster.fence.Fence`: acknowledged beats keep it; the
deadline reaches the camera processes through the node's lease file,
:mod:`camfleet.runtime.lease`). At the start, and whenever the lease lapsed
(NATS unreachable, the agent frozen), the agent *rejoins* before any camera
runs again: it registers again, reports ``fenced``, reads its desired state
and applies exactly that, and only then takes a new lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from nats.aio.client import Client

from camfleet import __version__
from camfleet.runtime.control import NodeControl
from camfleet.runtime.lease import FENCE_EXIT_S, lease_clock_ns
from camfleet.runtime.supervisor import FENCE_KILL_S

from .capacity import load_or_measure
from .clusterauth import load_cluster_key
from .connection import NatsOptions, connect
from .coordinator import default_replicas
from .desired import DesiredStateSource, KvDesiredState, fleet_base
from .fence import Fence
from .hardware import detect_hardware
from .kv import Bucket, KvError, open_bucket
from .registry import ALIVE_BUCKETS, NODES_BUCKET, FleetTiming, Heartbeat, NodeRecord, status_subject

__all__ = ["Agent", "describe_node"]

log = logging.getLogger("camfleet.cluster.agent")

REREGISTER_BEATS = 30
"""Every this many beats the agent checks its registration is still in the registry."""

WATCHDOG_S = 0.1
"""Seconds between two checks of the lease's deadline in the agent."""

STAND_DOWN_S = FENCE_EXIT_S + FENCE_KILL_S + 1.0
"""Seconds a clean stop waits for the camera processes to be gone before it says ``leaving``."""


def _running_cameras(node: NodeControl) -> list[str]:
    """The node's camera processes that still have a pid."""
    return [p.name for cam in node.status().cameras.values() for p in cam.processes.values() if p.pid]


def describe_node(node_id: str, data_dir: Path, labels: dict[str, str]) -> NodeRecord:
    """The registration of this machine: inventory now, capacity cached or measured (a few seconds)."""
    hw = detect_hardware()
    capacity, measured = load_or_measure(data_dir)
    if measured:
        log.info("capacity benchmark done (cached in %s)", data_dir / "capacity")
    return NodeRecord(
        node_id=node_id, hostname=hw.hostname, addresses=hw.addresses, version=__version__,
        labels=dict(labels),
        cores=hw.cores, memory_bytes=hw.memory_bytes, shm_bytes=hw.shm_bytes,
        gpus=[dataclasses.asdict(g) for g in hw.gpus], vaapi=[dataclasses.asdict(v) for v in hw.vaapi],
        capacity=capacity.to_json(), started_at=time.time(), notes=hw.notes + capacity.notes,
    )


class Agent:
    """Keeps ``node`` registered, beating and reporting at the NATS servers of ``options``.

    ``lease`` receives the lease's deadline (the node's
    :meth:`~camfleet.runtime.lease.NodeLease.hold_until`; None: the node is not
    fenced, e.g. an embedded one); ``desired`` drives the node's cameras (default: its key in
    ``camfleet_desired`` over the node's configuration without its cameras); ``cluster_key``
    receives the fleet's API key (:mod:`~camfleet.cluster.clusterauth`) once read, before registering.
    """

    def __init__(self, options: NatsOptions, node: NodeControl, record: NodeRecord,
                 timing: FleetTiming | None = None, *, desired: DesiredStateSource | None = None,
                 replicas: int | None = None, lease: Callable[[int], None] | None = None,
                 cluster_key: Callable[[bytes], None] | None = None) -> None:
        self.options = options
        self.node = node
        self.record = record
        self.timing = timing or FleetTiming()
        if desired is None:
            from camfleet.pipeline.validate import element_catalog  # noqa: PLC0415 - imports every element

            base = fleet_base(node.current_config())
            desired = KvDesiredState(record.node_id, base, elements=element_catalog())
        self.desired = desired
        self.fence = Fence(self.timing.heartbeat_ttl_s, lease or (lambda _deadline: None))
        self._fencing = lease is not None
        self._replicas = replicas
        self._cluster_key = cluster_key
        self._seq = 0
        self._rejoined = 0  # rejoins done (the first one is the start)
        self._rejoining = False
        self._resync: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[int]] = set()

    def _fenced(self) -> bool:
        """Whether the node stopped its cameras for a lapsed lease and has not begun to rejoin."""
        return self.fence.lapsed_at is not None and not self._rejoining

    @property
    def node_id(self) -> str:
        """The id of this node."""
        return self.record.node_id

    async def run(self, stop: asyncio.Event) -> None:
        """Register, beat, report and follow the desired state until ``stop``; raises ConnectionError."""
        client = await connect(NatsOptions(self.options.urls, self.options.creds, self.options.ca_file,
                                           name=f"camfleet-agent-{self.node_id[:8]}"))
        try:
            buckets = await self._register(client, stop)
            if buckets is None:
                return
            nodes, alive = buckets
            log.info("agent %s: registered at %s", self.node_id, self.options.shown)
            tasks = [asyncio.create_task(self._beats(nodes, alive, stop), name="heartbeat"),
                     asyncio.create_task(self._watchdog(stop), name="lease-watchdog"),
                     asyncio.create_task(self._statuses(client, stop), name="status"),
                     asyncio.create_task(self.desired.run(self.node, stop), name="desired-state")]
            await stop.wait()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                    await asyncio.wait_for(task, 3.0)
            await self._stand_down()
            leaving = Heartbeat(self.node_id, self._seq + 1, self.record.started_at, leaving=True).to_bytes()
            for bucket in alive:  # a clean stop: the coordinators need not wait for the expiry
                with contextlib.suppress(KvError):
                    await bucket.put(self.node_id, leaving, ttl_s=self.timing.heartbeat_ttl_s)
        finally:
            try:  # deliver what is queued (the leaving beat), but never hang a stop on a server that is away
                await asyncio.wait_for(client.drain(), 2.0)
            except Exception:
                with contextlib.suppress(Exception):
                    await client.close()

    async def _register(self, client: Client,
                        stop: asyncio.Event) -> tuple[Bucket, tuple[Bucket, ...]] | None:
        """Write the registration and a first beat, retrying while JetStream is down (None: stopped)."""
        js = client.jetstream(timeout=2.0)
        replicas = self._replicas or default_replicas(client)
        delay = 0.25
        while not stop.is_set():
            try:
                nodes = await open_bucket(js, NODES_BUCKET, replicas=replicas, markers_ttl_s=None)
                alive = tuple([await open_bucket(js, name, replicas=replicas) for name in ALIVE_BUCKETS])
                await self.desired.attach(js, replicas, self._fenced)
                if self._cluster_key is not None:  # the node's API checks the coordinators' signatures
                    self._cluster_key(await load_cluster_key(js, replicas))
                await nodes.put(self.node_id, self.record.to_bytes())
                return nodes, alive
            except KvError as exc:
                log.warning("registration failed: %s (again in %.1f s)", exc, delay)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(2.0, delay * 2)
        return None

    async def _beat(self, alive: tuple[Bucket, ...]) -> None:
        """Write one beat to every heartbeat bucket; returns at the first acknowledgement.

        One is enough: the coordinators count the node lost only once its key
        expired in every bucket (see ``ALIVE_BUCKETS``). A bucket that is
        electing a stream leader holds its write for seconds; that write goes
        on in the background instead of holding up the lease. Raises KvError
        only when no bucket took the beat.
        """
        self._seq += 1
        beat = Heartbeat(self.node_id, self._seq, self.record.started_at).to_bytes()
        pending = {asyncio.ensure_future(b.put(self.node_id, beat, ttl_s=self.timing.heartbeat_ttl_s))
                   for b in alive}
        errors: list[BaseException] = []
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            outcomes = [task.exception() for task in done]  # every one retrieved, even past a success
            errors += [e for e in outcomes if e is not None]
            if None in outcomes:
                for slow in pending:
                    self._background.add(slow)
                    slow.add_done_callback(self._settled)
                return
        for error in errors:
            if not isinstance(error, KvError):
                raise error
        raise errors[0]

    def _settled(self, task: asyncio.Future[int]) -> None:
        """A beat's slower write ended (its outcome no longer matters: another bucket took the beat)."""
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved, so a failure is not reported as never retrieved

    async def _beats(self, nodes: Bucket, alive: tuple[Bucket, ...], stop: asyncio.Event) -> None:
        """Beat every ``heartbeat_s`` (the first at once); each acknowledged beat renews the lease.

        A beat acknowledged while the lease does not hold (the start, or after
        a lapse) makes the agent rejoin first. Every ``REREGISTER_BEATS``
        beats, the registration is written again if it is gone (deleted by an
        operator, or lost with a store that was wiped).
        """
        failing = False
        while not stop.is_set():
            sent = lease_clock_ns()
            try:
                await self._beat(alive)
            except KvError as exc:
                if not failing:  # once per outage, not once a second
                    log.warning("heartbeat failed: %s (retrying every %.1f s)", exc, self.timing.heartbeat_s)
                failing = True
            else:
                if not self.fence.acked(sent):
                    await self._rejoin(nodes, alive, stop)
                elif failing and (self._resync is None or self._resync.done()):
                    # a short outage, the lease held: read the key at once (a watch may lag), beside
                    # the beats (an apply that stops cameras may take longer than the lease)
                    self._resync = asyncio.create_task(self._quiet_resync(), name="desired-resync")
                if failing:
                    log.info("heartbeat delivered again")
                    failing = False
                with contextlib.suppress(KvError):
                    await self.desired.flush()
                if self._seq % REREGISTER_BEATS == 0:
                    with contextlib.suppress(KvError):
                        if await nodes.get(self.node_id) is None:
                            log.warning("registration missing from %s: written again", NODES_BUCKET)
                            await nodes.put(self.node_id, self.record.to_bytes())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.timing.heartbeat_s)

    async def _rejoin(self, nodes: Bucket, alive: tuple[Bucket, ...], stop: asyncio.Event) -> None:
        """Register again, report ``fenced``, run exactly what the desired state says, then take a lease.

        After an outage long enough for the coordinators to count this node
        lost (heartbeat TTL + grace), wait ``grace_s`` first: the leader
        rewrites a lost node's desired state without its moved cameras, and
        that write must be read, not the one before it.
        """
        outage = self.fence.outage_s()
        first = self._rejoined == 0
        self._rejoining = True
        try:
            if not first:
                log.warning("agent %s: heartbeats acknowledged again after %.1f s without a lease; rejoining",
                            self.node_id, outage)
                await nodes.put(self.node_id, self.record.to_bytes())
                await self.desired.report_fenced(f"the node's lease lapsed ({outage:.1f} s without an "
                                                 "acknowledged heartbeat): its cameras were stopped")
                if outage >= self.timing.heartbeat_ttl_s + self.timing.grace_s:
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.timing.grace_s)
                    if stop.is_set():
                        return
            await self.desired.resync(self.node)
            sent = lease_clock_ns()
            await self._beat(alive)
        except KvError as exc:
            log.warning("rejoin failed: %s (again with the next heartbeat)", exc)
            return
        except Exception:  # never the end of the heartbeats: the next beat tries again
            log.exception("rejoin failed (again with the next heartbeat)")
            return
        finally:
            self._rejoining = False
        if self.fence.grant(sent):
            self._rejoined += 1
            log.info("agent %s: lease %s; cameras may run", self.node_id, "taken" if first else "taken again")
        else:
            log.warning("rejoin took longer than the lease; again with the next heartbeat")

    async def _quiet_resync(self) -> None:
        try:
            await self.desired.resync(self.node)
        except KvError as exc:
            log.debug("desired state not read after the outage: %s", exc)

    async def _stand_down(self) -> None:
        """A clean stop: stop the cameras (cleanly, bounded), end the lease, wait for them to be gone.

        Only then is ``leaving`` said: the coordinators move the cameras at once
        on it, and a camera must not run here and there at the same time.
        """
        if not self._fencing:
            return
        config = self.node.current_config()
        if config.cameras:
            with contextlib.suppress(asyncio.TimeoutError):  # past it, the lease's end stops them
                await asyncio.wait_for(asyncio.to_thread(
                    self.node.apply_config, config.model_copy(update={"cameras": {}})),
                    config.runtime.stop_timeout + 1.0)
        self.fence.revoke()
        deadline = time.monotonic() + STAND_DOWN_S
        while _running_cameras(self.node) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # the supervisor's pass sees the exits: no event crosses NodeControl

    async def _watchdog(self, stop: asyncio.Event) -> None:
        """Notice the lease lapsing (the camera processes stop by themselves; this says so)."""
        while not stop.is_set():
            if self.fence.check():
                log.error("agent %s: fenced: no heartbeat acknowledged for %.1f s; the node's camera "
                          "processes stop until the fleet is reachable again", self.node_id,
                          self.fence.outage_s())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCHDOG_S)

    async def _statuses(self, client: Client, stop: asyncio.Event) -> None:
        subject = status_subject(self.node_id)
        while not stop.is_set():
            try:
                status = await asyncio.to_thread(self.node.status)
                payload = json.dumps(status.to_json(), separators=(",", ":"), default=str).encode()
                await client.publish(subject, payload)
            except Exception as exc:  # a status that cannot be sent now is sent 2 s later
                log.debug("status not published: %r", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.timing.status_s)
