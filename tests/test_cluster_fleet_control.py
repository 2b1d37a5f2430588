"""The leader's scheduler and control API with real NATS, two coordinator processes and fake agents.

The agents are plain NATS clients in this process (:mod:`tests.support.fake_agents`):
they register, beat and acknowledge their desired state through the real records, so
every check is about the coordinators: an apply through the CLI places 12 cameras,
each on exactly one node; a bad fleet file changes nothing; drain and uncordon; an
agent that stops beating has its key emptied first, then its cameras placed elsewhere
within the target; killing the leader changes no desired state.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import nats
import pytest
import yaml

from camfleet.cluster.connection import NatsOptions
from camfleet.cluster.control import ControlError, request
from camfleet.cluster.kv import open_bucket
from camfleet.cluster.registry import DESIRED_BUCKET, FleetTiming
from camfleet_testing.nats import NatsHarness
from tests.support.fake_agents import FakeAgent, Observer
from tests.support.fleet import cli_env, spawn_cli, stop_process

pytestmark = pytest.mark.process

TIMING = FleetTiming()
FAILOVER_S = 10.0  # cameras placed elsewhere within this long after the loss is declared (well under)
_T = TypeVar("_T")
_marks: list[str] = []  # when each wait ended (seconds into the scenario), printed for the timing record
_start = [0.0]


def _cameras(n: int) -> dict[str, Any]:
    return {
        f"cam{i:02d}": {
            "sources": [{"url": f"rtsp://viewer:secret{i}@10.0.0.{i}/s", "roles": ["detect"]}],
            "placement": {"group": f"area{i % 6}"},
        }
        for i in range(1, n + 1)
    }


async def _until(
    what: str, probe: Callable[[], Awaitable[_T | None]] | Callable[[], _T | None], timeout: float
) -> _T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            _marks.append(f"{what} at {time.monotonic() - _start[0]:.1f} s")
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camfleet.cli", "cluster", *args],
        capture_output=True,
        check=False,
        text=True,
        env=cli_env(),
        timeout=60,
    )


def _each_once(observer: Observer, n: int) -> dict[str, list[str]] | None:
    where = observer.where()
    return where if len(where) == n and all(len(v) == 1 for v in where.values()) else None


def test_place_fail_over_drain_and_hand_over(nats1: NatsHarness, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fleet.db'}"
    procs = [
        spawn_cli(
            ["coordinator", "--nats", nats1.url, "--data-dir", str(tmp_path / f"c{i}"), "--db", db],
            tmp_path / f"c{i}.log",
        )
        for i in (1, 2)
    ]
    try:
        asyncio.run(_scenario(nats1.url, tmp_path, procs))
    finally:
        for proc in procs:
            stop_process(proc)
        for i in (1, 2):
            print(
                f"--- c{i}.log (tail)\n" + "\n".join((tmp_path / f"c{i}.log").read_text().splitlines()[-15:])
            )


async def _scenario(url: str, tmp: Path, procs: list[subprocess.Popen[bytes]]) -> None:
    options = NatsOptions((url,))
    _start[0] = time.monotonic()
    client = await nats.connect(url)
    agents = [FakeAgent(client, f"node-{c}") for c in "abc"]
    for agent in agents:
        await agent.start()
    observer = Observer()
    watch = asyncio.create_task(
        observer.run(await open_bucket(client.jetstream(), DESIRED_BUCKET, markers_ttl_s=None))
    )
    try:

        async def leader() -> dict[str, Any] | None:
            try:
                return await request(options, "leader", timeout_s=2)
            except ControlError:
                return None

        t0 = time.monotonic()
        first = await _until("a leader answering", leader, 30)
        print(f"leader answering after {time.monotonic() - t0:.1f} s")
        nodes = await _until("3 nodes alive at the leader", lambda: _alive(options, 3), 15)
        assert sorted(n["node_id"] for n in nodes) == ["node-a", "node-b", "node-c"]

        # a bad fleet file: refused as a whole, naming the camera and the key; nothing written anywhere
        bad = _cameras(12)
        bad["cam05"]["detect"] = {"fps": "fast"}
        bad["cam07"]["placement"]["labelz"] = {"zone": "x"}
        (tmp / "bad.yaml").write_text(yaml.safe_dump({"cameras": bad}))
        out = await asyncio.to_thread(_cli, ["apply", str(tmp / "bad.yaml"), "--nats", url])
        assert out.returncode == 1, out
        assert "cameras.cam05.detect.fps" in out.stderr and "cameras.cam07.placement.labelz" in out.stderr
        assert "nothing was changed" in out.stderr and "secret" not in out.stderr + out.stdout
        assert observer.writes == []

        # 12 cameras: each on exactly one node, spread 4/4/4, anti-affinity groups apart
        (tmp / "fleet.yaml").write_text(yaml.safe_dump({"cameras": _cameras(12)}))
        started = time.monotonic()
        out = await asyncio.to_thread(_cli, ["apply", str(tmp / "fleet.yaml"), "--nats", url])
        assert out.returncode == 0, out
        print(f"$ camfleet cluster apply fleet.yaml\n{out.stdout}")
        where = await _until("12 cameras each on one node", lambda: _each_once(observer, 12), 10)
        applied_in = time.monotonic() - started
        counts = {a.node_id: len(a.cameras) for a in agents}
        assert counts == {"node-a": 4, "node-b": 4, "node-c": 4}, counts
        for node in ("node-a", "node-b", "node-c"):
            groups = [f"area{int(c[3:]) % 6}" for c, n in where.items() if n == [node]]
            assert len(groups) == len(set(groups)), f"{node}: an anti-affinity group twice: {groups}"
        tokens = {dc.token for a in agents for dc in a.desired.cameras.values()}  # type: ignore[union-attr]
        assert all(t > 0 for t in tokens)
        await _until("the agents confirmed", lambda: all(a.desired for a in agents), 5)

        # the same bad configuration again: the running fleet is untouched
        before = observer.revisions()
        with pytest.raises(ControlError) as refused:
            await request(options, "apply", {"cameras": bad})
        assert len(refused.value.reply["issues"]) == 2 and observer.revisions() == before

        # drain node-a: its cameras move (each stopped there before it starts elsewhere), then uncordon
        await request(options, "drain", {"node": "node-a"})
        await _until("node-a drained", lambda: not agents[0].cameras and _each_once(observer, 12), 15)
        _check_stop_before_start(observer)
        st = await request(options, "nodes")
        assert next(n for n in st["nodes"] if n["node_id"] == "node-a")["draining"] is True
        reply = await request(options, "uncordon", {"node": "node-a"})
        assert reply["draining"] is False and reply["cordoned"] is False
        # rebalancing brings node-a work again, a few cameras per pass, past the imbalance threshold
        await _until("rebalanced", lambda: _each_once(observer, 12) and len(agents[0].cameras) >= 3, 20)
        await asyncio.sleep(0.5)
        status = await request(options, "status")
        assert not [c for c in status["cameras"].values() if c.get("stopping_on")], status["cameras"]

        # node-b dies: its key is emptied first, then its cameras start elsewhere
        moved = set(agents[1].cameras)
        await agents[1].die()
        died = time.monotonic()
        await _until(
            "node-b's cameras placed elsewhere",
            lambda: (w := _each_once(observer, 12)) and all(w[c] != ["node-b"] for c in moved),
            TIMING.heartbeat_ttl_s + TIMING.grace_s + 2 * TIMING.heartbeat_s + FAILOVER_S,
        )
        failover = time.monotonic() - died
        _check_loss_order(observer, "node-b", moved, died)
        assert failover < TIMING.heartbeat_ttl_s + TIMING.grace_s + 2 * TIMING.heartbeat_s + 3, failover
        print(f"timeline: {_marks}")
        print(
            f"applied 12 cameras in {applied_in:.2f} s; node-b's {len(moved)} camera(s) placed elsewhere "
            f"{failover:.2f} s after its last beat (lost at expiry + grace: about "
            f"{TIMING.heartbeat_ttl_s + TIMING.grace_s:.0f} s)"
        )

        # kill -9 the leader: the other coordinator leads and changes nothing that is fine
        await asyncio.sleep(1.0)
        before = observer.revisions()
        history_before = (await request(options, "history", {"limit": 1000}))["history"]
        leader_proc = next(p for p in procs if p.pid == first["pid"])
        leader_proc.kill()
        leader_proc.wait(5)
        new = await _until("a new leader", lambda: _other_leader(options, first["coordinator_id"]), 15)
        await asyncio.sleep(1.5)
        assert observer.revisions() == before, "the handover rewrote a desired state"
        assert _each_once(observer, 12)
        assert new["term"] > first["term"]
        status = await request(options, "status")
        assert status["leader"]["coordinator_id"] == new["coordinator_id"]
        assert {c["node"] for c in status["cameras"].values()} == {"node-a", "node-c"}
        assert "secret" not in str(status) and "secret" not in str(await request(options, "cameras"))
        history = (await request(options, "history", {"limit": 1000}))["history"]
        assert len(history) == len(history_before) and any("lost" in h["reason"] for h in history)

        # the new leader stages and applies: cam12 goes, cam13 comes; the nodes' status reaches it
        staged = await request(options, "stage", {"cameras": {"cam12": None, "cam13": _cameras(13)["cam13"]}})
        assert set(staged["staged"]) == {"cam12", "cam13"} and "secret13" not in str(staged)
        reply = await request(options, "apply")
        assert (reply["added"], reply["removed"], reply["scheduled"]) == (["cam13"], ["cam12"], True), reply
        await _until(
            "cam13 placed and cam12 gone",
            lambda: (w := _each_once(observer, 12)) and "cam13" in w and "cam12" not in w,
            5,
        )
        # an edit made on what the API showed (URLs masked) keeps the stored credentials
        shown = (await request(options, "cameras"))["cameras"]["cam01"]["settings"]
        assert "secret1" not in str(shown)
        await request(
            options,
            "apply",
            {
                "cameras": {
                    **{n: c for n, c in _cameras(13).items() if n != "cam12"},
                    "cam01": shown | {"detect": {"fps": 2}},
                }
            },
        )
        await _until(
            "cam01's new settings with its real URL",
            lambda: any(
                "cam01" in a.cameras
                and a.desired.cameras["cam01"].settings.get("detect") == {"fps": 2}  # type: ignore[union-attr]
                and "secret1@" in a.desired.cameras["cam01"].settings["sources"][0]["url"]  # type: ignore[union-attr]
                for a in agents
                if a is not agents[1]
            ),
            5,
        )
        await _until("the nodes' status at the leader", lambda: _healthy(options), 5)
    finally:
        watch.cancel()
        for agent in agents:
            await agent.die()
        await client.close()


async def _alive(options: NatsOptions, n: int) -> list[dict[str, Any]] | None:
    try:
        nodes: list[dict[str, Any]] = (await request(options, "nodes", timeout_s=2))["nodes"]
    except ControlError:
        return None
    return nodes if sum(x["state"] == "alive" for x in nodes) == n else None


async def _healthy(options: NatsOptions) -> bool:
    cams = (await request(options, "status"))["cameras"]
    return all(c["state"] == "healthy" for c in cams.values())


async def _other_leader(options: NatsOptions, old: str) -> dict[str, Any] | None:
    try:
        reply = await request(options, "leader", timeout_s=2)
    except ControlError:
        return None
    return reply if reply["coordinator_id"] != old else None


def _check_stop_before_start(observer: Observer) -> None:
    """A camera is never in two nodes' desired states at once, at any write (stream order)."""
    state: dict[str, set[str]] = {}
    for rev, node, d, _at in observer.writes:
        state[node] = set(d.cameras)
        seen: dict[str, str] = {}
        for n, cams in state.items():
            for cam in cams:
                assert cam not in seen, f"at revision {rev}: {cam} on {seen[cam]} and {n}"
                seen[cam] = n


def _check_loss_order(observer: Observer, lost: str, moved: set[str], since: float) -> None:
    """After ``since``, the lost node's key lost the cameras before any other key gained them."""
    after = [w for w in observer.writes if w[3] >= since]
    removal = min(rev for rev, node, d, _ in after if node == lost and not moved & set(d.cameras))
    gained = [rev for rev, node, d, _ in after if node != lost and moved & set(d.cameras)]
    assert gained and min(gained) > removal, (removal, gained)
    _check_stop_before_start(observer)
