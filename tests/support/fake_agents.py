"""Fake fleet agents for the coordinator's tests: plain NATS clients, no camera processes.

Each registers a real :class:`NodeRecord`, beats into the heartbeat bucket
like the real agent, watches its own ``camfleet_desired`` key and answers
each revision with an :class:`AppliedReport` (it "runs" what its key says).
:meth:`FakeAgent.die` stops it as a ``kill -9`` would: no leaving beat, no
more reports. An :class:`Observer` records every desired-state write in
order, to check the ordering rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client

from camfleet.cluster.kv import Bucket, open_bucket
from camfleet.cluster.registry import (
    ALIVE_BUCKET,
    APPLIED_BUCKET,
    DESIRED_BUCKET,
    NODES_BUCKET,
    AppliedReport,
    DesiredNode,
    FleetTiming,
    Heartbeat,
    NodeRecord,
    status_subject,
)


class FakeAgent:
    """A node that registers, beats and acknowledges its desired state (capacity: px/s, inferences/s)."""

    def __init__(
        self,
        client: Client,
        node_id: str,
        *,
        decode_pps: float = 1e9,
        infer_ps: float = 40.0,
        labels: dict[str, str] | None = None,
        timing: FleetTiming | None = None,
    ) -> None:
        self.client = client
        self.node_id = node_id
        self.timing = timing or FleetTiming()
        self.record = NodeRecord(
            node_id=node_id,
            hostname=f"host-{node_id}",
            addresses=["127.0.0.1"],
            version="test",
            labels=labels or {},
            cores=4,
            memory_bytes=8 << 30,
            shm_bytes=1 << 30,
            capacity={"decode_pixels_per_s": decode_pps, "inferences_per_s": infer_ps},
            started_at=time.time(),
        )
        self.desired: DesiredNode | None = None
        # more of each camera's status fields (cpu_percent, processed_fps...) and the node's detectors
        self.camera_status: dict[str, Any] = {}
        self.detectors: dict[str, Any] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = 0

    @property
    def cameras(self) -> set[str]:
        """What this node runs now (its latest desired state)."""
        return set(self.desired.cameras) if self.desired is not None else set()

    async def start(self) -> None:
        """Register, beat, follow the desired key."""
        js = self.client.jetstream(timeout=5.0)
        nodes = await open_bucket(js, NODES_BUCKET, markers_ttl_s=None)
        self.alive = await open_bucket(js, ALIVE_BUCKET)
        self.desired_bucket = await open_bucket(js, DESIRED_BUCKET, markers_ttl_s=None)
        self.applied = await open_bucket(js, APPLIED_BUCKET, markers_ttl_s=None)
        await nodes.put(self.node_id, self.record.to_bytes())
        await self._beat()
        self._tasks = [asyncio.create_task(self._beats()), asyncio.create_task(self._follow())]

    async def _beat(self) -> None:
        self._seq += 1
        await self.alive.put(
            self.node_id,
            Heartbeat(self.node_id, self._seq, self.record.started_at).to_bytes(),
            ttl_s=self.timing.heartbeat_ttl_s,
        )

    async def _beats(self) -> None:
        while True:
            await asyncio.sleep(self.timing.heartbeat_s)
            with contextlib.suppress(Exception):
                await self._beat()
                cams = {c: {"state": "healthy", "decode_fps": 15.0, **self.camera_status}
                        for c in sorted(self.cameras)}
                status = {"node": self.node_id, "at": time.time(), "cameras": cams,
                          "detectors": self.detectors}
                await self.client.publish(status_subject(self.node_id), json.dumps(status).encode())

    async def _follow(self) -> None:
        async for entry in self.desired_bucket.watch(self.node_id):
            if entry is None or entry.deleted:
                continue
            self.desired = DesiredNode.from_bytes(entry.value, entry.key)
            report = AppliedReport(
                self.node_id, self.desired.revision, cameras=sorted(self.desired.cameras), at=time.time()
            )
            await self.applied.put(self.node_id, report.to_bytes())

    async def die(self) -> None:
        """Stop beating and answering, as a killed agent (its beat expires on its own)."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Observer:
    """Every write to ``camfleet_desired``, in stream order: (kv revision, node, desired state, seen at)."""

    writes: list[tuple[int, str, DesiredNode, float]] = field(default_factory=list)
    latest: dict[str, tuple[int, DesiredNode]] = field(default_factory=dict)

    async def run(self, bucket: Bucket) -> None:
        """Record until cancelled."""
        async for entry in bucket.watch():
            if entry is None or entry.deleted:
                continue
            d = DesiredNode.from_bytes(entry.value, entry.key)
            self.writes.append((entry.revision, entry.key, d, time.monotonic()))
            self.latest[entry.key] = (entry.revision, d)

    def where(self) -> dict[str, list[str]]:
        """camera → the nodes whose latest desired state holds it."""
        out: dict[str, list[str]] = {}
        for node, (_rev, d) in sorted(self.latest.items()):
            for cam in d.cameras:
                out.setdefault(cam, []).append(node)
        return out

    def revisions(self) -> dict[str, int]:
        """node → kv revision of its latest desired state."""
        return {node: rev for node, (rev, _d) in self.latest.items()}
