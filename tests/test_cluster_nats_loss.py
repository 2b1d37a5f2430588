"""Losing a NATS server stops no camera: the heartbeat buckets' streams are led by different servers.

A replicated stream takes no write for the 5-7 s its followers need to elect
a new leader after the leader's server dies, longer than an agent's lease
(heartbeat TTL - 1 s). Every beat goes to two buckets whose stream leaders
the leader coordinator keeps on different servers, so one acknowledgement
still renews the lease. Here, on a 3-server cluster with a coordinator and an
agent running one camera, the server leading the first heartbeat stream is
killed with ``-9`` (the agent's own server when it happens to be): the camera
keeps its processes, the agent never reports ``fenced``, the node is never
counted lost, and beats reach the first bucket again once it has a new leader.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest
import yaml
from nats.aio.client import Client

from camfleet.cluster.connection import NatsOptions
from camfleet.cluster.control import ControlError, request
from camfleet.cluster.registry import ALIVE_BUCKETS, APPLIED_BUCKET, AppliedReport, Heartbeat
from camfleet.cluster.stream_leaders import stream_leader
from camfleet_testing.nats import NatsHarness
from tests.support.fleet import cli_env, seed_capacity, spawn_cli, stop_process

from .test_cluster_desired import camera_pids, running

pytestmark = pytest.mark.process

STREAMS = [f"KV_{name}" for name in ALIVE_BUCKETS]


async def _until(what: str, probe: Any, timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def test_killing_the_server_leading_a_heartbeat_stream_stops_no_camera(nats3: NatsHarness,
                                                                      tmp_path: Path) -> None:
    data = tmp_path / "agent"
    seed_capacity(data)
    config = tmp_path / "node.yaml"
    config.write_text(f"data_dir: {data}\npipelines: {{p: [motion: {{}}]}}\n"
                      "defaults: {pipeline: p, detect: {fps: 5}}\n")
    coordinator = spawn_cli(["coordinator", "--nats", nats3.url, "--data-dir", str(tmp_path / "c1"),
                             "--db", f"sqlite:///{tmp_path / 'fleet.db'}"], tmp_path / "c1.log")
    agent = spawn_cli(["agent", "--nats", nats3.url, "--config", str(config)], tmp_path / "agent.log")
    try:
        asyncio.run(_scenario(nats3, tmp_path, data))
        # read before the stop, which is a clean "lost (stopped cleanly)" of its own
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("agent", "c1")}
    finally:
        for proc in (agent, coordinator):
            stop_process(proc)
        for name in ("agent", "c1"):
            lines = (tmp_path / f"{name}.log").read_text().splitlines()
            print(f"--- {name}.log (tail)\n" + "\n".join(lines[-20:]))
    assert "fenced:" not in logs["agent"] and "rejoining" not in logs["agent"], logs["agent"][-3000:]
    assert "-> lost" not in logs["c1"] and "-> expired" not in logs["c1"], logs["c1"][-3000:]


async def _scenario(cluster: NatsHarness, tmp: Path, data: Path) -> None:
    options = NatsOptions(tuple(cluster.urls))
    fleet = {"cameras": {"cam1": {"sources": [{"url": "synthetic://cam1?width=160&height=120&fps=5",
                                               "roles": ["detect"]}]}}}
    (tmp / "fleet.yaml").write_text(yaml.safe_dump(fleet))

    async def leader() -> dict[str, Any] | None:
        try:
            return await request(options, "leader", timeout_s=2)
        except ControlError:
            return None

    async def one_alive() -> bool:
        try:
            nodes = (await request(options, "nodes", timeout_s=2))["nodes"]
        except ControlError:
            return False
        return bool(sum(n["state"] == "alive" for n in nodes) == 1)

    await _until("a leader answering", leader, 60)
    await _until("the agent alive at the leader", one_alive, 60)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "camfleet.cli", "cluster", "apply", str(tmp / "fleet.yaml"),
        "--nats", cluster.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=cli_env())
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()
    status_path = data / "run" / "status.json"
    pids = await _until("cam1's processes", lambda: (p := camera_pids(status_path)).keys()
                        >= {"cam1/ingest", "cam1/pipeline"} and p, 30)

    client = await nats.connect(servers=cluster.urls)
    try:
        leaders = await _until("the heartbeat streams led by different servers", lambda: _leaders(client),
                               30, interval=0.5)
        victim = next(i for i, s in enumerate(cluster.servers) if s.spec.name == leaders[0])
        reports: list[AppliedReport] = []
        seqs: list[int] = []
        js = client.jetstream(timeout=2)
        kv_applied = await js.key_value(APPLIED_BUCKET)
        kv_alive = await js.key_value(ALIVE_BUCKETS[0])
        watch = await kv_applied.watchall()

        killed_at = time.monotonic()
        cluster.kill(victim)

        async def new_leader() -> str | None:
            try:
                name, _ = await stream_leader(client, STREAMS[0])
            except Exception:
                return None
            return name if name not in (None, leaders[0]) else None

        elected = await _until(f"{STREAMS[0]} led again", new_leader, 30, interval=0.25)
        elected_after = time.monotonic() - killed_at

        async def beat_in_first_bucket() -> bool:
            try:
                entry = await kv_alive.get(_node_id(data))
            except Exception:
                return False
            seqs.append(Heartbeat.from_bytes(entry.value or b"{}").seq)
            return len(seqs) >= 2 and seqs[-1] > seqs[0]

        await _until("beats in the first bucket again", beat_in_first_bucket, 15, interval=0.5)
        print(f"killed {leaders[0]} (leading {STREAMS[0]}; {STREAMS[1]} led by {leaders[1]}); "
              f"{elected} leads it after {elected_after:.1f} s")
        while True:
            try:
                entry = await asyncio.wait_for(watch.updates(), 0.5)  # type: ignore[no-untyped-call]
            except TimeoutError:
                break
            if entry is None or not entry.value:
                continue
            reports.append(AppliedReport.from_bytes(entry.value))
        await watch.stop()  # type: ignore[no-untyped-call]
        assert not any(r.fenced for r in reports), reports
        now = camera_pids(status_path)
        assert {k: now.get(k) for k in pids} == pids and running(pids) == set(pids), (pids, now)
    finally:
        await client.close()


async def _leaders(client: Client) -> list[str] | None:
    names = [(await stream_leader(client, s))[0] for s in STREAMS]
    return names if None not in names and len(set(names)) == len(names) else None  # type: ignore[return-value]


def _node_id(data: Path) -> str:
    return (data / "node-id").read_text().strip()
