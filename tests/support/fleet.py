"""Helpers for the fleet's tests: the CLI's fleet commands as subprocesses, their state, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import psutil

_T = TypeVar("_T")
ROOT = Path(__file__).resolve().parents[2]
_API_URL = re.compile(r"API on (http://\S+)")


def api_url_in(log: Path) -> str | None:
    """The API URL a ``camfleet agent`` or ``coordinator`` printed last in ``log`` (None: not yet)."""
    try:
        found = _API_URL.findall(log.read_text(errors="replace"))
    except OSError:
        return None
    return str(found[-1]) if found else None


def cli_env() -> dict[str, str]:
    """The environment for ``python -m camfleet.cli`` from this checkout, unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "testing" / "src"),
                                         env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn_cli(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``camfleet ARGS`` with its output in ``log`` (``env``: variables added to :func:`cli_env`)."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "camfleet.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=cli_env() | (env or {}))


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def wait_for(what: str, probe: Callable[[], _T | None], timeout: float, interval: float = 0.05) -> _T:
    """Poll ``probe`` until it returns something truthy; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def read_state(path: Path) -> dict[str, Any] | None:
    """A coordinator's state file, or None when not written yet."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def seed_capacity(data_dir: Path, decode_pixels_per_s: float = 5e7, inferences_per_s: float = 20.0) -> None:
    """Write the capacity cache an agent measures at its first start (for tests not about the benchmark)."""
    from camfleet import __version__
    from camfleet.cluster.capacity import Capacity, _model_sha256

    folder = data_dir / "capacity"
    folder.mkdir(parents=True, exist_ok=True)
    seeded = Capacity(decode_pixels_per_s=decode_pixels_per_s, inferences_per_s=inferences_per_s,
                      camfleet_version=__version__, model_sha256=_model_sha256(),
                      measured_at=time.time(), notes=["seeded by a test"])
    (folder / "capacity.json").write_text(json.dumps(seeded.to_json()))


# -- the whole fleet on one machine: NATS cluster, simulator, coordinators, agents --------------------------

NODE_CONFIG = """
data_dir: {data}
pipelines: {{p: [motion: {{}}]}}
defaults: {{pipeline: p, detect: {{fps: 2}}, record: {{enabled: false}}}}
cameras: {{}}
"""
"""An agent's node settings: the cheapest pipeline (motion only, no detector), no recording."""

BASE_CONFIG = """
data_dir: {data}
pipelines: {{p: [motion: {{}}], q: [motion: {{}}]}}
defaults: {{pipeline: p, detect: {{fps: 2}}, record: {{enabled: false}}}}
cameras: {{}}
"""
"""The coordinators' base: the agents' settings plus pipeline ``q``, which no agent has (a refusal)."""


@dataclass
class Seen:
    """A camera process seen running: camera, node, pid, start and last sample alive (s since boot)."""

    camera: str
    node: str
    pid: int
    started: float
    last_alive: float


TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
"""The resolution of a process's start time in the kernel (seconds)."""


class ProcessSampler:
    """Samples every agent's camera processes (status file pids that are alive) every ``interval`` seconds.

    :meth:`overlaps` names each camera that ran on two nodes at once: a
    process that started (its kernel start time) before another node's
    process of that camera was last seen alive.

    Both times are read on one clock, seconds since boot: a process's start
    from the kernel (``create_time() - boot_time()``, in clock ticks), the
    samples from ``CLOCK_BOOTTIME``. ``create_time()`` itself is epoch time
    through the kernel's boot time, which is whole seconds: against
    ``time.time()`` it is up to a second early, which once made processes
    started 0.2-0.8 s after the other node's had stopped look like overlaps.
    """

    def __init__(self, status_files: dict[str, Path], interval: float = 0.05) -> None:
        self.status_files = status_files
        self.interval = interval
        self.seen: dict[int, Seen] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fleet-sampler", daemon=True)

    def start(self) -> None:
        """Start sampling in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> dict[str, dict[str, int]]:
        """node -> {``cam/kind``: pid} of the camera processes alive now (and record them)."""
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        boot = psutil.boot_time()
        out: dict[str, dict[str, int]] = {}
        for node, path in self.status_files.items():
            alive = {}
            for name, pid in status_pids(path).items():
                try:
                    proc = psutil.Process(pid)
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    started = proc.create_time() - boot
                except psutil.Error:
                    continue
                alive[name] = pid
                with self._lock:
                    seen = self.seen.setdefault(pid, Seen(name.split("/")[0], node, pid, started, now))
                    if seen.started == started:  # the same process (not a reused pid)
                        seen.last_alive = now
            out[node] = alive
        return out

    def overlaps(self) -> list[str]:
        """Every time a camera ran on two nodes at once, in words (empty: never)."""
        with self._lock:
            seen = list(self.seen.values())
        bad = []
        for a in seen:
            for b in seen:
                # b's start is truncated to a clock tick: b surely started before a was last seen
                # alive only if it did so by a whole tick
                if a.camera == b.camera and a.node != b.node and a.started <= b.started \
                        and b.started + TICK_S <= a.last_alive:
                    bad.append(f"{a.camera}: pid {a.pid} on {a.node} alive until {a.last_alive:.2f}, "
                               f"pid {b.pid} on {b.node} started {b.started:.2f}")
        return bad


def status_pids(status_path: Path) -> dict[str, int]:
    """``cam/kind`` -> pid of every camera process in a node's status file (maybe gone since)."""
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return {}
    return {proc["name"]: proc["pid"] for cam in status.get("cameras", {}).values()
            for proc in cam.get("processes", {}).values() if proc.get("pid")}


class FleetAgent:
    """One ``camfleet agent`` process with its own data and shared-memory directories (node id: ``name``)."""

    def __init__(self, name: str, root: Path, shm_root: Path, url: str, capacity: float,
                 node_config: str = NODE_CONFIG) -> None:
        self.name = name
        self.data = root / name
        self.shm = shm_root / name
        self.url = url
        self.data.mkdir(parents=True, exist_ok=True)
        self.shm.mkdir(parents=True, exist_ok=True)
        # a fixed node id (the agent keeps the one it finds): "n1" in hex, readable in failures
        self.node_id = name.encode().hex().ljust(32, "0")
        (self.data / "node-id").write_text(self.node_id + "\n")
        seed_capacity(self.data, decode_pixels_per_s=capacity)
        self.config = root / f"{name}.yaml"
        self.config.write_text(node_config.format(data=self.data))
        self.log = root / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def status_file(self) -> Path:
        """The node's status file (camera processes and their pids)."""
        return self.data / "run" / "status.json"

    def start(self) -> None:
        """Start the agent process (again: same node id, data and shm directories)."""
        self.proc = spawn_cli(["agent", "--nats", self.url, "--config", str(self.config)], self.log,
                              env={"CAMFLEET_SHM_DIR": str(self.shm)})

    def api_url(self) -> str | None:
        """The agent's media API (signed requests only), once it printed it."""
        return api_url_in(self.log)

    def pids(self) -> dict[str, int]:
        """``cam/kind`` -> pid of its camera processes alive now."""
        out = {}
        for name, pid in status_pids(self.status_file).items():
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    out[name] = pid
        return out

    def descendants(self) -> list[psutil.Process]:
        """Every process below the agent (camera processes, forkserver, detectors)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            return list(psutil.Process(self.proc.pid).children(recursive=True))
        except psutil.Error:
            return []

    def terminate(self) -> None:
        """Send SIGTERM (SIGCONT first, in case it is frozen) without waiting."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()

    def stop(self) -> None:
        """SIGTERM (SIGCONT first, in case it is frozen), then SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)
            stop_process(self.proc, 15)


class FleetHarness:
    """The fleet on loopback: 3 NATS servers, the camera simulator, 2 coordinators and 3 agents.

    Each agent has its own data and shared-memory directories; capacities
    (decode pixels/s) are ``capacities`` (``n1`` the largest, so placement by
    capacity shows); ``nats_servers`` servers (1: a cheaper fleet for tests
    that lose no server). ``api``: the coordinators serve the fleet's API (``--api 127.0.0.1:0``;
    :meth:`api_url`). A NATS client in a thread of its own records every write
    to ``camfleet_desired`` (:attr:`observer`) and asks the leader
    (:meth:`ctl`); :attr:`sampler` samples the agents' camera processes.
    """

    def __init__(self, root: Path, cameras: int = 12,
                 capacities: tuple[float, ...] = (1.0e8, 5.0e7, 5.0e7), *, node_config: str = NODE_CONFIG,
                 base_config: str = BASE_CONFIG, api: bool = False,
                 nats_servers: int = 3) -> None:
        from camfleet_testing.nats import NatsHarness
        from camfleet_testing.sim import CameraSpec, SimServer

        self.root = root
        self.nats = NatsHarness(root / "nats", nats_servers)
        # cheap cameras: 160x120 at 4 fps, H.264 at 40 kbit/s (none: no simulator at all)
        self.sim = SimServer([CameraSpec(name=f"cam{i:02d}", width=160, height=120, fps=4, bitrate_kbps=40,
                                         gop=4, objects=("person",)) for i in range(1, cameras + 1)]) \
            if cameras else None
        self.shm_root = Path(tempfile.mkdtemp(prefix="camfleet-e2e-", dir="/dev/shm"))
        self.capacities = capacities
        self.node_config = node_config
        self.api = api
        self.agents: list[FleetAgent] = []
        self.coordinators: list[subprocess.Popen[bytes]] = []
        self.db = f"sqlite:///{root / 'fleet.db'}"
        self.base = root / "base.yaml"
        self.base.write_text(base_config.format(data=root / "base-data"))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-harness", daemon=True)
        self.sampler: ProcessSampler | None = None
        self.last_states: dict[str, dict[str, Any]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> FleetHarness:
        """Start everything; return once a leader answers and sees every agent alive (``timeout``: s)."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start everything without waiting for the processes (:meth:`wait_ready` waits): the caller
        may prepare meanwhile (e.g. a browser) while they import and register."""
        self.nats.start()
        if self.sim is not None:
            self.sim.open()
        for i in (1, 2):
            self.coordinators.append(self._coordinator(i))
        self.agents = [FleetAgent(f"n{i}", self.root, self.shm_root, self.nats.url, cap, self.node_config)
                       for i, cap in enumerate(self.capacities, 1)]
        for agent in self.agents:
            agent.start()
        self._thread.start()
        self.call(self._open())
        self.sampler = ProcessSampler({a.node_id: a.status_file for a in self.agents})
        self.sampler.start()

    def wait_ready(self, timeout: float = 60.0) -> FleetHarness:
        """Wait until a leader answers and sees every agent alive (``timeout``: s)."""
        wait_for(f"{len(self.agents)} agents alive at a leader", lambda: self.alive_nodes() == self.node_ids,
                 timeout, 0.2)
        dead = [i + 1 for i, p in enumerate(self.coordinators) if p.poll() is not None]
        assert not dead, f"coordinator(s) {dead} exited; see c*.log under {self.root}"
        return self

    def _coordinator(self, i: int) -> subprocess.Popen[bytes]:
        api = ["--api", "127.0.0.1:0"] if self.api else []
        return spawn_cli(["coordinator", "--nats", self.nats.url, "--data-dir", str(self.root / f"c{i}"),
                          "--db", self.db, "--base-config", str(self.base), *api], self.root / f"c{i}.log")

    def api_url(self, i: int) -> str | None:
        """Coordinator ``i``'s (0 or 1) API URL once printed (``api`` only; after a restart, the new one)."""
        return api_url_in(self.root / f"c{i + 1}.log")

    def api_urls(self, timeout: float = 60.0) -> list[str]:
        """Each coordinator's API URL (``api=True``), from its log, in coordinator order."""
        found = re.compile(r"API on (http://\S+)")

        def url(i: int) -> str | None:
            m = found.search((self.root / f"c{i}.log").read_text(errors="replace"))
            return m.group(1) if m else None

        return [wait_for(f"coordinator {i}'s API", lambda i=i: url(i), timeout, 0.1)  # type: ignore[misc]
                for i in (1, 2)]

    def coordinator_id(self, i: int) -> str:
        """Coordinator ``i``'s (0 or 1) id, as it wrote it in its data directory."""
        return (self.root / f"c{i + 1}" / "coordinator-id").read_text().strip()

    def restart_coordinator(self, i: int) -> None:
        """Start coordinator ``i`` (0 or 1) again after it was killed."""
        self.coordinators[i] = self._coordinator(i + 1)

    async def _open(self) -> None:
        import nats

        from camfleet.cluster.coordinator import default_replicas
        from camfleet.cluster.kv import open_bucket
        from camfleet.cluster.registry import DESIRED_BUCKET
        from tests.support.fake_agents import Observer

        self.client = await nats.connect(servers=self.nats.urls, max_reconnect_attempts=-1,
                                         reconnect_time_wait=0.2)
        js = self.client.jetstream(timeout=5)
        # replicated like the fleet's own (this may create it first): R1 would die with its server
        self.desired_bucket = await open_bucket(js, DESIRED_BUCKET, replicas=default_replicas(self.client),
                                                markers_ttl_s=None)
        self.observer = Observer()
        self._watch = asyncio.ensure_future(self.observer.run(self.desired_bucket))

    def stop(self) -> None:
        """Stop everything: agents and coordinators side by side, NATS last (cameras stop while it is up)."""
        if self.sampler is not None:
            self.sampler.stop()
        # every agent and coordinator told at once, then each waited for: they stop in parallel (seconds
        # each); the agents before NATS, as their cameras stop
        for agent in self.agents:
            agent.terminate()
        for proc in self.coordinators:
            if proc.poll() is None:
                proc.terminate()
        for agent in self.agents:
            agent.stop()
        for proc in self.coordinators:
            stop_process(proc)
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._watch.cancel()
                self.call(self.client.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if self.sim is not None:
            self.sim.close()
        self.nats.stop()
        shutil.rmtree(self.shm_root, ignore_errors=True)

    # -- the test's side ----------------------------------------------------------------------------
    def call(self, coro: Any, timeout: float = 15.0) -> Any:
        """Run ``coro`` on the harness's loop; its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def ctl(self, verb: str, payload: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """The leader's reply to ``verb`` (its JSON; ``ok`` false included), through the harness's client."""

        async def ask() -> dict[str, Any]:
            msg = await self.client.request(f"camfleet.ctl.{verb}", json.dumps(payload or {}).encode(),
                                            timeout=timeout)
            reply: dict[str, Any] = json.loads(msg.data)
            return reply

        return cast(dict[str, Any], self.call(ask(), timeout + 5))

    def try_ctl(self, verb: str, payload: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """:meth:`ctl`, or None when no leader answers (an election, a server going away)."""
        try:
            return self.ctl(verb, payload, timeout=2)
        except Exception:  # no responders, a timeout: not yet
            return None

    @property
    def node_ids(self) -> set[str]:
        """Every agent's node id."""
        return {a.node_id for a in self.agents}

    def agent(self, node_id: str) -> FleetAgent:
        """The agent of ``node_id``."""
        return next(a for a in self.agents if a.node_id == node_id)

    def stream_leader(self, stream: str) -> int:
        """The index of the NATS server leading ``stream`` (e.g. ``KV_camfleet_alive``)."""

        async def ask() -> str:
            info = await self.client.jetstream(timeout=5).stream_info(stream)
            assert info.cluster is not None and info.cluster.leader
            return str(info.cluster.leader)

        leader = self.call(ask())
        return next(i for i, s in enumerate(self.nats.servers) if s.spec.name == leader)

    def alive_nodes(self) -> set[str]:
        """The nodes the leader counts alive (empty: no leader answers)."""
        reply = self.try_ctl("nodes")
        if not reply or not reply.get("ok"):
            return set()
        return {n["node_id"] for n in reply["nodes"] if n["state"] == "alive"}

    def camera(self, name: str, stream: str | None = None, **placement: Any) -> dict[str, Any]:
        """A fleet camera's settings: simulator stream ``stream`` (default ``name`` when the simulator
        has it, else its first), placement hints."""
        assert self.sim is not None, "a harness without simulated cameras"
        sim_name = stream or (name if name in self.sim.cameras else self.sim.cameras[0])
        return {"sources": [{"url": self.sim.url(sim_name), "roles": ["detect"]}],
                "placement": {"stream": {"width": 160, "height": 120, "fps": 4}, "decode_pps": 5e6,
                              "infer_ps": 0, **placement}}

    def where(self) -> dict[str, list[str]]:
        """camera -> the nodes whose latest desired state holds it."""
        return self.observer.where()

    def running(self) -> dict[str, set[str]]:
        """camera -> the nodes where both its processes are alive now."""
        out: dict[str, set[str]] = {}
        for agent in self.agents:
            names = agent.pids()
            for key in names:
                cam = key.split("/")[0]
                if {f"{cam}/ingest", f"{cam}/pipeline"} <= names.keys():
                    out.setdefault(cam, set()).add(agent.node_id)
        return out

    def camera_states(self) -> dict[str, dict[str, Any]]:
        """camera -> its entry in the leader's status (node, state, ...); empty when no leader answers."""
        reply = self.try_ctl("status")
        return reply["cameras"] if reply and reply.get("ok") else {}

    def all_healthy(self, names: set[str]) -> dict[str, dict[str, Any]] | None:
        """The leader's camera status when exactly ``names`` are placed and each is healthy on its node."""
        cams = self.camera_states()
        self.last_states = cams  # for a failure's message
        if set(cams) != names or any(c.get("state") != "healthy" or not c.get("node") for c in cams.values()):
            return None
        return cams
