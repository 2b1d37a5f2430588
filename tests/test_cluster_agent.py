"""``camfleet agent`` as a process against a real NATS server, watched by an in-process coordinator.

Registration with its fields, a stable owner-only node id, status every 2 s,
the heartbeat key gone within TTL + grace of ``kill -9``, a new agent known
to the coordinator within a second, a clean stop seen at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from camfleet import __version__
from camfleet.cluster.connection import NatsOptions
from camfleet.cluster.coordinator import Coordinator
from camfleet.cluster.kv import open_bucket
from camfleet.cluster.registry import ALIVE_BUCKETS, NODES_BUCKET, FleetTiming, NodeRecord, status_subject
from camfleet_testing.nats import NatsHarness
from tests.support.fleet import spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.e2e

TIMING = FleetTiming()


class CoordinatorThread:
    """A :class:`Coordinator` on its own event loop in a thread (the in-process API is thread-safe)."""

    def __init__(self, url: str) -> None:
        self.coordinator = Coordinator(NatsOptions(tuple(url.split(","))), "c" * 32, TIMING)
        self.seen: dict[str, float] = {}  # node id -> monotonic time it was first registered
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self.coordinator.run(self._stop))

    def __enter__(self) -> Coordinator:
        self._thread.start()
        assert self.coordinator.ready.wait(15)
        return self.coordinator

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class KvReader:
    """Reads the fleet's buckets from the test, on its own event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.loop = asyncio.new_event_loop()
        self.client = self.loop.run_until_complete(nats.connect(servers=url.split(",")))
        self.js = self.client.jetstream(timeout=2)

    def get(self, bucket: str, key: str) -> bytes | None:
        async def read() -> bytes | None:
            entry = await (await open_bucket(self.js, bucket)).get(key)
            return entry.value if entry is not None else None

        return self.loop.run_until_complete(read())

    def next_status(self, node_id: str, timeout: float) -> tuple[bytes, float]:
        async def receive() -> tuple[bytes, float]:
            sub = await self.client.subscribe(status_subject(node_id))
            first = await sub.next_msg(timeout)
            t0 = time.monotonic()
            second = await sub.next_msg(timeout)
            await sub.unsubscribe()
            assert second.data
            return first.data, time.monotonic() - t0

        return self.loop.run_until_complete(receive())

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()


@pytest.fixture
def kv(nats1: NatsHarness) -> Iterator[KvReader]:
    reader = KvReader(nats1.url)
    try:
        yield reader
    finally:
        reader.close()


def _member_state(coordinator: Coordinator, node_id: str) -> str | None:
    member = coordinator.snapshot().members.get(node_id)
    return member.state if member is not None else None


def test_agent_registers_beats_reports_and_is_lost_after_kill_9(nats1: NatsHarness, kv: KvReader,
                                                                tmp_path: Path) -> None:
    data = tmp_path / "agent"
    args = ["agent", "--nats", nats1.url, "--data-dir", str(data), "--label", "zone=north",
            "--label", "rack=r1"]
    with CoordinatorThread(nats1.url) as coordinator:
        proc = spawn_cli(args, tmp_path / "agent.log")
        try:
            node_id = str(wait_for("the node id", lambda: (data / "node-id").is_file()
                                   and (data / "node-id").read_text().strip(), 60))
            raw = wait_for("the registration", lambda: kv.get(NODES_BUCKET, node_id), 60, interval=0.02)
            registered_at = time.monotonic()
            wait_for("the coordinator to know the agent", lambda: _member_state(coordinator, node_id), 2,
                     interval=0.02)
            known_after = time.monotonic() - registered_at
            assert known_after < 1.0, f"the coordinator knew the new agent after {known_after:.2f} s"

            # the registration record
            record = NodeRecord.from_bytes(raw, node_id)
            assert record.node_id == node_id and record.hostname == socket.gethostname()
            assert record.version == __version__ and record.labels == {"zone": "north", "rack": "r1"}
            assert record.cores >= 1 and record.memory_bytes > 0 and record.shm_bytes > 0
            assert isinstance(record.gpus, list) and isinstance(record.vaapi, list)
            assert record.capacity["decode_pixels_per_s"] > 1e6
            assert record.capacity["inferences_per_s"] > 0.5
            assert record.capacity["camfleet_version"] == __version__ and record.capacity["model_sha256"]
            assert stat.S_IMODE(os.stat(data / "node-id").st_mode) == 0o600
            assert json.loads((data / "capacity" / "capacity.json").read_text())["measured_at"] \
                == record.capacity["measured_at"]

            # alive (its beats in both heartbeat buckets: the first acknowledgement is enough for the
            # agent, the other may land a moment later), and the node's status every 2 s, compact JSON
            wait_for("beats in both heartbeat buckets",
                     lambda: all(kv.get(b, node_id) is not None for b in ALIVE_BUCKETS), 5)
            wait_for("alive", lambda: _member_state(coordinator, node_id) == "alive", 5)
            payload, gap = kv.next_status(node_id, 10)
            status: dict[str, Any] = json.loads(payload)
            assert status["cameras"] == {} and status["pid"] == proc.pid and status["node"] == node_id
            assert b", " not in payload
            assert 1.5 < gap < 3.5, f"status every {gap:.1f} s"

            # kill -9: the heartbeat key is gone within TTL (+ grace), the coordinator counts it lost
            killed = time.monotonic()
            proc.kill()
            proc.wait(5)
            limit = TIMING.heartbeat_ttl_s + TIMING.grace_s
            wait_for("the heartbeat keys to expire",
                     lambda: all(kv.get(b, node_id) is None for b in ALIVE_BUCKETS), limit + 1, interval=0.1)
            expired_after = time.monotonic() - killed
            wait_for("lost", lambda: _member_state(coordinator, node_id) == "lost", limit + 1)
            lost_after = time.monotonic() - killed
            assert expired_after <= TIMING.heartbeat_ttl_s + 1.0
            assert lost_after <= limit + 1.0  # the last beat came before the kill; sweeps every 0.25 s
            assert kv.get(NODES_BUCKET, node_id) is not None  # the registration stays: known, and lost
            print(f"new agent known after {known_after:.2f} s; after kill -9: heartbeat gone "
                  f"{expired_after:.1f} s, lost {lost_after:.1f} s")

            # the same data directory: the same id, no new benchmark; a clean stop is seen at once
            proc = spawn_cli(args, tmp_path / "agent2.log")
            wait_for("alive again", lambda: _member_state(coordinator, node_id) == "alive", 60)
            again = NodeRecord.from_bytes(kv.get(NODES_BUCKET, node_id) or b"", node_id)
            assert again.capacity["measured_at"] == record.capacity["measured_at"]
            assert again.started_at > record.started_at
            stopped = time.monotonic()
            assert stop_process(proc) == 0
            wait_for("lost on a clean stop", lambda: _member_state(coordinator, node_id) == "lost", 2)
            # by its leaving word, not by the expiry: that would count it lost at the earliest TTL + grace
            # after its last beat, itself at most one beat before the stop (a loaded CI took 3.7 s once)
            assert time.monotonic() - stopped < TIMING.heartbeat_ttl_s + TIMING.grace_s - TIMING.heartbeat_s
        finally:
            stop_process(proc)
