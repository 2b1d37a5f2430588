"""The fleet half of ``bench/api.py --fleet``: the coordinator's API over 3 agents with real cameras.

:func:`bench_fleet` starts the e2e tests' fleet (:class:`tests.support.fleet.FleetHarness`: 3 NATS
servers, 2 coordinators with ``--api``, 3 agents as processes), applies N synthetic cameras through
the control API, waits until every one is healthy on its node, and measures through coordinator 1:
``/api/status`` and ``/api/events`` (the same closed loop as the single node, ``http_run``), then
MJPEG: K cameras each read at once directly from its agent (a request signed with the fleet's key,
as the coordinator sends it) and through the coordinator; the same frame arrives as the same JPEG
bytes on both, so each frame's added latency is its arrival through the coordinator minus its
arrival direct. Coordinator CPU per stream is its CPU over that window less its CPU over an idle
window of the same length just before, divided by K.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "src", ROOT / "testing" / "src"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from _benchutil import cpu_s, summary  # noqa: E402

WIDTH, HEIGHT, FPS = 160, 120, 2
"""Each fleet camera: a synthetic scene this size (pixels) at this rate (frames/s), motion only."""
MJPEG_FPS = 5.0
"""The MJPEG streams' rate limit (frames/s): above the cameras' rate, so every new frame is sent."""
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)

METHOD = {
    "fleet": (
        "tests/support/fleet.py's FleetHarness on loopback: 3 NATS servers (JetStream cluster), 2 "
        "`camfleet coordinator --api 127.0.0.1:0` processes sharing one SQLite fleet database, 3 `camfleet "
        f"agent` processes of equal capacity (spread placement: N/3 cameras each). Cameras: synthetic:// "
        f"{WIDTH}x{HEIGHT} at {FPS} fps rendered and encoded in each camera's ingest process, motion "
        "pipeline only, no detector, no recording (small and slow enough that 96 run on this 2-core "
        "machine); applied through camfleet.ctl.apply, measured once every camera is healthy. Events: "
        "the same count per camera as the single node, written into the fleet database with "
        "fleetstore.events.store_batch before the coordinators start (what the CAMFLEET_EVENTS consumer "
        "writes). HTTP: the same closed loop as the single node against coordinator 1 (leader or not, "
        "as the election went: the JSON says), bearer token from the fleet database. Events requests "
        "cycle through camera=camNN&limit=50 over the fleet's cameras and label=person&limit=50&offset=100. "
        "'node beside the fleet' (full run only): the single node's server measured again once the fleet's "
        "cameras are healthy, before the coordinator's runs, so both see the machine with the fleet's "
        "processes running"
    ),
    "mjpeg": (
        f"K cameras, each read at once by two MJPEG clients at fps={MJPEG_FPS:g} (one event loop, httpx): "
        "directly from the agent that runs it (a request signed with the fleet's key, as the coordinator "
        "signs it) and through coordinator 1 (bearer token). A frame is the same JPEG bytes on both (the "
        "agent's per-camera JPEG cache), matched by SHA-1; added latency = arrival of its last byte through "
        "the coordinator - arrival direct (perf_counter, one process). Coordinator CPU per stream = "
        "(its user+system CPU over the window - over an idle window of the same length just before) / K"
    ),
}


def fleet_camera(name: str) -> dict[str, Any]:
    """A fleet camera's settings: a synthetic source and the placement demand it really has."""
    return {"sources": [{"url": f"synthetic://{name}?width={WIDTH}&height={HEIGHT}&fps={FPS}",
                         "roles": ["detect"]}],
            "placement": {"stream": {"width": WIDTH, "height": HEIGHT, "fps": FPS}, "infer_ps": 0}}


def _seed_events(db: str, names: list[str], per_camera: int) -> tuple[str, int]:
    """An admin token and ``per_camera`` events per camera in the fleet database (its schema made first)."""
    from camfleet.fleetstore.events import Incoming, store_batch
    from camfleet.fleetstore.store import FleetStore
    from camfleet.vocabulary import Event, EventMessage

    store = FleetStore(db)
    try:
        token = store.create_token("bench", "admin")
        labels = ["person", "car", "cat", "dog"]
        t0 = time.time() - 86_400
        batch: list[Incoming] = []
        seq = 0
        for c, cam in enumerate(names):
            node = f"n{c % 3 + 1}"
            for k in range(per_camera):
                start = t0 + (k * len(names) + c) * (86_400 / (per_camera * len(names)))
                seq += 1
                ev = Event(id=f"ev-{c}-{k}", camera=cam, label=labels[(k + c) % 4], start=start,
                           end=start + 8.0, top_score=0.5 + (k % 50) / 100, zones=["left", "door"][: k % 3])
                batch.append(Incoming(node, seq, cam, EventMessage("end", ev), 1, start))
                if len(batch) >= 2000:
                    store_batch(store.engine, batch)
                    batch = []
        if batch:
            store_batch(store.engine, batch)
    finally:
        store.close()
    return token, seq


class _Parts:
    """Splits a multipart MJPEG body into JPEGs; records each one's arrival (perf_counter) by SHA-1."""

    def __init__(self) -> None:
        self.buf = b""
        self.arrivals: dict[bytes, float] = {}

    def feed(self, chunk: bytes, now: float) -> None:
        self.buf += chunk
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            m = _LENGTH.search(self.buf[:head_end])
            if m is None:  # not a part header: resynchronise on the next boundary
                self.buf = self.buf[head_end + 4:]
                continue
            start = head_end + 4
            end = start + int(m.group(1))
            if len(self.buf) < end + 2:
                return
            self.arrivals.setdefault(hashlib.sha1(self.buf[start:end]).digest(), now)
            self.buf = self.buf[end + 2:]


async def _read(client: httpx.AsyncClient, url: str, headers: dict[str, str], parts: _Parts,
                errors: list[str]) -> None:
    try:
        async with client.stream("GET", url, headers=headers) as resp:
            if resp.status_code != 200:
                errors.append(f"{url}: HTTP {resp.status_code}")
                return
            async for chunk in resp.aiter_raw():
                parts.feed(chunk, time.perf_counter())
    except httpx.HTTPError as exc:
        errors.append(f"{url}: {type(exc).__name__}")


def mjpeg_run(coord_url: str, token: str, direct: dict[str, str], key: bytes, seconds: float,
              coordinator: psutil.Process) -> dict[str, Any]:
    """``direct``: camera -> its agent's URL. Both streams of every camera for ``seconds``; the figures."""
    from camfleet.cluster.clusterauth import AUTH_HEADER, sign

    pairs = {name: (_Parts(), _Parts()) for name in direct}
    errors: list[str] = []

    async def main() -> None:
        limits = httpx.Limits(max_connections=4 * len(direct) + 4)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), limits=limits, trust_env=False) as client:
            tasks = []
            for name, agent_url in direct.items():
                path = f"/api/cameras/{name}/mjpeg?fps={MJPEG_FPS:g}"
                tasks.append(asyncio.create_task(_read(client, agent_url + path,
                                                       {AUTH_HEADER: sign(key, "GET", path)},
                                                       pairs[name][0], errors)))
                tasks.append(asyncio.create_task(_read(client, coord_url + path,
                                                       {"Authorization": f"Bearer {token}"},
                                                       pairs[name][1], errors)))
            await asyncio.wait(tasks, timeout=seconds)
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t

    idle0 = cpu_s(coordinator)
    time.sleep(seconds)  # the coordinator's own idle CPU over a window as long as the measured one
    idle = cpu_s(coordinator) - idle0
    busy0 = cpu_s(coordinator)
    asyncio.run(main())
    busy = cpu_s(coordinator) - busy0
    added, direct_n, through_n, unmatched = [], 0, 0, 0
    for d, c in pairs.values():
        direct_n += len(d.arrivals)
        through_n += len(c.arrivals)
        for digest, at in c.arrivals.items():
            if digest in d.arrivals:
                added.append(at - d.arrivals[digest])
            else:
                unmatched += 1
    k = max(len(direct), 1)
    return {"streams": len(direct), "seconds": seconds, "added_ms": summary(added, 1000.0),
            "frames_direct": direct_n, "frames_through": through_n, "unmatched": unmatched,
            "coord_cpu_pct_per_stream": 100 * (busy - idle) / seconds / k,
            "coord_cpu_pct_idle": 100 * idle / seconds, "errors": len(errors),
            "first_error": errors[0] if errors else None}


@dataclass
class Launched:
    """A fleet launched (its processes starting) with its events seeded: :func:`launch`'s result."""

    tmp: tempfile.TemporaryDirectory[str]
    fleet: Any
    began: float
    token: str
    events: int
    nats_servers: int


def launch(cameras: int, per_camera: int, nats_servers: int = 3) -> Launched:
    """Seed the fleet database and start its processes without waiting for them (they import for
    tens of seconds: the caller measures the single node meanwhile)."""
    from tests.support.fleet import FleetHarness

    names = [f"cam{i:02d}" for i in range(1, cameras + 1)]
    tmp = tempfile.TemporaryDirectory(prefix="bench-api-fleet-")
    # one simulator stream (the harness's; unused): the cameras are synthetic, rendered by each ingest
    fleet = FleetHarness(Path(tmp.name), cameras=1, capacities=(1e9, 1e9, 1e9), api=True,
                         nats_servers=nats_servers)
    began = time.perf_counter()
    token, events = _seed_events(fleet.db, names, per_camera)
    fleet.launch()
    return Launched(tmp, fleet, began, token, events, nats_servers)


def bench_fleet(launched: Launched, cameras: int, duration: float, concs: list[int], streams: int,
                mjpeg_s: float, http_run: Callable[..., dict[str, Any]], say: Callable[[str], None],
                beside: Callable[[], None] | None = None) -> dict[str, Any]:
    """Wait for the fleet :func:`launch` started, apply ``cameras``, measure status, events and MJPEG
    through coordinator 1; stop the fleet.

    ``beside``: called once every camera is healthy, before the coordinator's runs (the single node
    measured again under the fleet's load).
    """
    from tests.support.fleet import wait_for

    from camfleet.cluster.clusterauth import load_cluster_key

    names = [f"cam{i:02d}" for i in range(1, cameras + 1)]
    out: dict[str, Any] = {"cameras": cameras, "http": [], "method": METHOD,
                           "nats_servers": launched.nats_servers}
    fleet, began, token = launched.fleet, launched.began, launched.token
    tmp = launched.tmp.name
    out["events"] = launched.events
    with launched.tmp:
        try:
            fleet.wait_ready(timeout=240)  # a busy machine: 5 Python processes start at once
            out["fleet_up_s"] = time.perf_counter() - began
            applied = time.perf_counter()
            reply = fleet.ctl("apply", {"cameras": {n: fleet_camera(n) for n in names}}, timeout=60)
            assert reply.get("ok"), reply
            states = wait_for(f"{cameras} cameras healthy", lambda: fleet.all_healthy(set(names)),
                              60 + 1.5 * cameras, 0.5)
            out["apply_to_healthy_s"] = time.perf_counter() - applied
            per_node: dict[str, int] = {}
            for c in states.values():
                per_node[c["node"]] = per_node.get(c["node"], 0) + 1
            out["per_node"] = per_node
            url = wait_for("coordinator 1's API", lambda: fleet.api_url(0), 30)
            coordinator = psutil.Process(fleet.coordinators[0].pid)
            lead = fleet.ctl("leader")["coordinator_id"]
            out["served_by"] = "leader" if (Path(tmp) / "c1" / "coordinator-id").read_text().strip() == lead \
                else "follower"
            say(f"  fleet: {cameras} cameras on {len(per_node)} agents {sorted(per_node.values())}, up in "
                f"{out['fleet_up_s']:.0f} s, apply -> healthy {out['apply_to_healthy_s']:.0f} s; "
                f"coordinator 1 is the {out['served_by']}")
            if beside is not None:
                beside()
            ev_paths = [f"/api/events?camera={n}&limit=50" for n in names]
            ev_paths += ["/api/events?label=person&limit=50&offset=100"] * max(4, len(names) // 8)
            for endpoint, paths in (("status", ["/api/status"]), ("events", ev_paths)):
                for conc in concs:
                    cpu0 = cpu_s(coordinator)
                    r = http_run(url, token, paths, conc, duration)
                    r["cpu_pct"] = 100 * (cpu_s(coordinator) - cpu0) / duration
                    r.update(variant="fleet", endpoint=endpoint, conc=conc)
                    out["http"].append(r)
                    s = r["summary_ms"]
                    say(f"  {'fleet coordinator':<26} {endpoint:<7} c={conc}: p50 {s['p50']:.2f} ms, "
                        f"p99 {s['p99']:.2f} ms, {r['req_s']:.0f} req/s"
                        + (f", {r['errors']} errors ({r['first_error']})" if r["errors"] else ""))
            # K cameras spread over the agents (every agent's API serves some)
            by_node: dict[str, list[str]] = {}
            for name in names:
                by_node.setdefault(states[name]["node"], []).append(name)
            chosen: list[str] = []
            while len(chosen) < min(streams, cameras):
                for node_cams in by_node.values():
                    if node_cams and len(chosen) < streams:
                        chosen.append(node_cams.pop(0))
            direct = {n: wait_for(f"{n}'s agent API", fleet.agent(states[n]["node"]).api_url, 10)
                      for n in chosen}
            key = fleet.call(load_cluster_key(fleet.client.jetstream(timeout=5)))
            m = mjpeg_run(url, token, direct, key, mjpeg_s, coordinator)
            out["mjpeg"] = m
            a = m["added_ms"]
            say(f"  mjpeg x{m['streams']}: added p50 {_f(a['p50'])} ms, p99 {_f(a['p99'])} ms, "
                f"coordinator {m['coord_cpu_pct_per_stream']:.2f} % CPU per stream; frames direct "
                f"{m['frames_direct']}, through {m['frames_through']}"
                + (f", {m['errors']} errors ({m['first_error']})" if m["errors"] else ""))
        finally:
            stopping = time.perf_counter()
            # every agent and coordinator at once (each agent stops its cameras while NATS is there); then
            # stop() waits for each in turn
            for proc in [a.proc for a in fleet.agents] + fleet.coordinators:
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            fleet.stop()
            out["fleet_stop_s"] = time.perf_counter() - stopping
    return out


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
