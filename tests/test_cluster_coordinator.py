"""Two coordinators as processes on a real 3-server NATS cluster: one leader, a lost server, handover.

Sampled through each coordinator's state file (``coordinator.json``, rewritten
within 0.1 s of a change): at every sample while both run, exactly one leads;
killing the NATS server that leads the lease's stream never makes two leaders
and never loses the agent; ``kill -9`` of the leader hands over within 10 s, to
a higher term.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from camfleet.cluster.registry import LEADER_BUCKET, FleetTiming
from camfleet_testing.nats import NatsHarness
from tests.support.fleet import read_state, seed_capacity, spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.process

HANDOVER_S = 10.0
TIMING = FleetTiming()


async def _stream_leader(urls: list[str], stream: str) -> int:
    """The index of the server leading ``stream``."""
    client = await nats.connect(servers=urls)
    try:
        info = await client.jetstream(timeout=5).stream_info(stream)
        assert info.cluster is not None and info.cluster.leader
        return [f"camfleet-test-n{i}" for i in (1, 2, 3)].index(info.cluster.leader)
    finally:
        await client.close()


def _states(paths: list[Path]) -> list[dict[str, Any] | None]:
    return [read_state(p) for p in paths]


def _leaders(paths: list[Path]) -> list[int]:
    return [i for i, s in enumerate(_states(paths)) if s is not None and s["is_leader"]]


def _sample_exactly_one(paths: list[Path], seconds: float, leader: int) -> int:
    """Sample every 50 ms for ``seconds``: exactly ``leader`` leads at each; returns the samples taken."""
    samples = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert _leaders(paths) == [leader], f"sample {samples}: leaders {_leaders(paths)}: {_states(paths)}"
        samples += 1
        time.sleep(0.05)
    return samples


def _agent_states(paths: list[Path]) -> list[str | None]:
    """Each coordinator's view of the one agent: its member state (None: unknown)."""
    return [next(iter(s["members"].values()))["state"] if s and s["members"] else None
            for s in _states(paths)]


def test_one_leader_through_a_lost_server_and_a_handover_on_kill(nats3: NatsHarness, tmp_path: Path) -> None:
    dirs = [tmp_path / "c1", tmp_path / "c2"]
    paths = [d / "coordinator.json" for d in dirs]
    procs = [spawn_cli(["coordinator", "--nats", nats3.url, "--data-dir", str(d)], tmp_path / f"c{i}.log")
             for i, d in enumerate(dirs, 1)]
    seed_capacity(tmp_path / "agent")  # the benchmark is the agent test's business
    procs.append(spawn_cli(["agent", "--nats", nats3.url, "--data-dir", str(tmp_path / "agent")],
                           tmp_path / "agent.log"))
    try:
        leaders = wait_for("a leader", lambda: _leaders(paths) or None, 30)
        assert len(leaders) == 1, _states(paths)
        leader = leaders[0]
        term = read_state(paths[leader])["term"]  # type: ignore[index]
        assert term > 0
        wait_for("the follower to know the leader",
                 lambda: (s := read_state(paths[1 - leader])) and s["leader"]
                 and s["leader"]["term"] == term, 10)
        _sample_exactly_one(paths, 1.0, leader)
        wait_for("the agent alive at both", lambda: _agent_states(paths) == ["alive", "alive"], 60)

        # a NATS server goes: the one leading the lease's stream, the worst case: the bucket takes no write
        # until the other two elect a new stream leader (Raft: 4-9 s). A failover shorter than the lease's
        # tolerance (lease - margin - renewal interval, 7 s) keeps the leader; a longer one moves the
        # leadership, safely. Either way: never two leaders, and one again as soon as the store is back.
        victim = asyncio.run(_stream_leader(nats3.urls, "KV_" + LEADER_BUCKET))
        before = read_state(paths[leader])["revision"]  # type: ignore[index]
        nats3.kill(victim)
        killed_at = time.monotonic()
        samples = 0
        while True:
            states = _states(paths)
            leading = [i for i, st in enumerate(states) if st is not None and st["is_leader"]]
            assert len(leading) <= 1, f"two leaders after {time.monotonic() - killed_at:.1f} s: {states}"
            assert "lost" not in _agent_states(paths), states  # its beats expire at worst, then come back
            samples += 1
            if leading and (states[leading[0]] or {}).get("revision", 0) > before \
                    and time.monotonic() - killed_at > TIMING.heartbeat_ttl_s + TIMING.grace_s:
                break  # a lease written after the failover, and the agent's beats had time to expire
            assert time.monotonic() - killed_at < TIMING.lease_ttl_s + 12, f"no leader since: {states}"
            time.sleep(0.05)
        recovered_after = time.monotonic() - killed_at
        kept = leading == [leader] and states[leader] is not None and states[leader]["term"] == term
        if not kept:  # the leadership moved during the failover: to a higher term
            leader = leading[0]
            assert states[leader]["term"] > term  # type: ignore[index]
            term = states[leader]["term"]  # type: ignore[index]
        wait_for("the agent alive at both", lambda: _agent_states(paths) == ["alive", "alive"], 5)
        nats3.restart(victim)  # back on its ports and store; it catches up with the others
        _sample_exactly_one(paths, 1.0, leader)

        # kill -9 the leader: the other one leads within HANDOVER_S, with a higher term
        killed_at = time.monotonic()
        procs[leader].kill()
        procs[leader].wait(5)
        follower = 1 - leader
        wait_for("the handover", lambda: (s := read_state(paths[follower])) and s["is_leader"],
                 HANDOVER_S + 2)
        handover = time.monotonic() - killed_at
        assert handover < HANDOVER_S, f"handover took {handover:.1f} s"
        new = read_state(paths[follower])
        assert new is not None and new["term"] > term
        assert new["leader"]["coordinator_id"] == new["coordinator_id"]
        print(f"lost NATS server (lease stream leader): {'same leader' if kept else 'leader moved'}, a lease "
              f"written {recovered_after:.1f} s after ({samples} samples, at most one leader each, the agent "
              f"never lost); handover after kill -9 of the leader: {handover:.2f} s; term -> {new['term']}")

        assert _agent_states([paths[follower]]) == ["alive"]
        assert stop_process(procs[follower], 15.0) == 0  # a clean stop (a leader gives its lease up)
        assert read_state(paths[follower])["stopped"] is True  # type: ignore[index]
    finally:
        for proc in procs:
            stop_process(proc)
