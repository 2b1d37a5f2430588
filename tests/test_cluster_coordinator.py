"""Two coordinators as processes on a real 3-server NATS cluster: one leader, a lost server, handover.

Sampled through each coordinator's state file (``coordinator.json``, rewritten
within 0.1 s of a change): at every sample while both run, exactly one leads;
killing one NATS server changes nothing; ``kill -9`` of the leader hands over
within 10 s, to a higher term.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from camfleet_testing.nats import NatsHarness
from tests.support.fleet import read_state, spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.process

HANDOVER_S = 10.0


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


def test_one_leader_survives_a_lost_server_and_hands_over_on_kill(nats3: NatsHarness, tmp_path: Path) -> None:
    dirs = [tmp_path / "c1", tmp_path / "c2"]
    paths = [d / "coordinator.json" for d in dirs]
    procs = [spawn_cli(["coordinator", "--nats", nats3.url, "--data-dir", str(d)], tmp_path / f"c{i}.log")
             for i, d in enumerate(dirs, 1)]
    try:
        leaders = wait_for("a leader", lambda: _leaders(paths) or None, 30)
        assert len(leaders) == 1, _states(paths)
        leader = leaders[0]
        term = read_state(paths[leader])["term"]  # type: ignore[index]
        assert term > 0
        wait_for("the follower to know the leader",
                 lambda: (s := read_state(paths[1 - leader])) and s["leader"]
                 and s["leader"]["term"] == term, 10)
        _sample_exactly_one(paths, 2.0, leader)

        # a NATS server goes: the one the leader talks to, the worst case (its client must reconnect)
        server = read_state(paths[leader])["server"]  # type: ignore[index]
        victim = next(i for i, s in enumerate(nats3.servers) if s.spec.client_url == server)
        nats3.kill(victim)
        samples = _sample_exactly_one(paths, 5.5, leader)  # longer than a lease: it was renewed meanwhile
        assert samples > 50
        assert read_state(paths[leader])["term"] == term  # type: ignore[index]
        nats3.restart(victim)  # back on its ports and store; it catches up with the others

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
        print(f"handover after kill -9 of the leader: {handover:.2f} s; term {term} -> {new['term']}")

        assert stop_process(procs[follower]) == 0
        assert read_state(paths[follower])["stopped"] is True  # type: ignore[index]
    finally:
        for proc in procs:
            stop_process(proc)
