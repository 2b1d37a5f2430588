"""``camfleet agent`` follows its key in ``camfleet_desired`` and fences itself when its lease lapses.

One agent process against a real NATS server, real camera processes
(synthetic sources); the desired state is written by hand, as the leader
would. The agent runs a revision and says so; refuses a bad one naming the
camera and the key, keeping its cameras (same pids); ignores a write of an
older leader term; frozen with SIGSTOP for longer than its lease, its camera
processes stop by themselves before the coordinators could count the node
lost; after SIGCONT it registers again, reports ``fenced``, and runs exactly
what its key says now.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import psutil
import pytest
import yaml

from camfleet.cluster.kv import open_bucket
from camfleet.cluster.registry import (
    APPLIED_BUCKET,
    DESIRED_BUCKET,
    NODES_BUCKET,
    AppliedReport,
    DesiredCamera,
    DesiredNode,
    FleetTiming,
)
from camfleet_testing.nats import NatsHarness
from tests.support.fleet import seed_capacity, spawn_cli, stop_process, wait_for

pytestmark = pytest.mark.process

TIMING = FleetTiming()


def camera(name: str, token: int, **extra: Any) -> DesiredCamera:
    """A small synthetic camera's settings, as the leader would place it."""
    settings = {"sources": [{"url": f"synthetic://{name}?width=160&height=120&fps=5", "roles": ["detect"]}],
                **extra}
    return DesiredCamera(settings=settings, token=token)


class Fleet:
    """The test's side of the store: writes desired states, collects every applied report (a watch)."""

    def __init__(self, url: str) -> None:
        self.reports: list[AppliedReport] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._open(url))

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _open(self, url: str) -> None:
        self.client = await nats.connect(servers=url.split(","))
        js = self.client.jetstream(timeout=2)
        self.desired = await open_bucket(js, DESIRED_BUCKET, markers_ttl_s=None)
        self.applied = await open_bucket(js, APPLIED_BUCKET, markers_ttl_s=None)
        self.nodes = await open_bucket(js, NODES_BUCKET, markers_ttl_s=None)
        self._watch = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for entry in self.applied.watch():
            if entry is not None and not entry.deleted:
                self.reports.append(AppliedReport.from_bytes(entry.value, entry.key))

    def write(self, node_id: str, revision: int, term: int, cameras: dict[str, DesiredCamera]) -> None:
        desired = DesiredNode(node_id, revision, term, cameras, written_at=time.time())
        self._call(self.desired.put(node_id, desired.to_bytes()))

    def write_raw(self, node_id: str, value: bytes) -> None:
        self._call(self.desired.put(node_id, value))

    def delete(self, node_id: str) -> None:
        self._call(self.desired.delete(node_id))

    def registration_revision(self, node_id: str) -> int:
        entry = self._call(self.nodes.get(node_id))
        return int(entry.revision) if entry is not None else 0

    def report(self, test: Any) -> AppliedReport | None:
        """The latest report, when ``test(report)`` holds for it."""
        latest = self.reports[-1] if self.reports else None
        return latest if latest is not None and test(latest) else None

    def close(self) -> None:
        self._watch.cancel()
        self._call(self.client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def fleet(nats1: NatsHarness) -> Iterator[Fleet]:
    f = Fleet(nats1.url)
    try:
        yield f
    finally:
        f.close()


def camera_pids(status_path: Path) -> dict[str, int]:
    """``cam/kind`` -> pid of every running camera process, from the node's status file."""
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return {}
    return {proc["name"]: proc["pid"] for cam in status["cameras"].values()
            for proc in cam["processes"].values() if proc["pid"]}


def running(pids: dict[str, int]) -> set[str]:
    """The names of ``pids`` whose process is still there (a zombie is gone)."""
    alive = set()
    for name, pid in pids.items():
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.add(name)
        except psutil.NoSuchProcess:
            pass
    return alive


def start_agent(url: str, fleet: Fleet, config: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``camfleet agent --config CONFIG`` once it has reported revision 0, and its node id."""
    proc = spawn_cli(["agent", "--nats", url, "--config", str(config)], log)
    try:
        data = Path(str(yaml.safe_load(config.read_text())["data_dir"]))
        node_id = str(wait_for("the node id", lambda: (data / "node-id").is_file()
                               and (data / "node-id").read_text().strip(), 60))
        wait_for("the first report", lambda: fleet.report(lambda r: r.revision == 0 and not r.fenced), 60)
    except BaseException:
        stop_process(proc)
        raise
    return proc, node_id


def test_agent_runs_refuses_and_fences_by_its_desired_state(nats1: NatsHarness, fleet: Fleet,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "agent"
    seed_capacity(data)
    config = tmp_path / "node.yaml"
    config.write_text(f"""
data_dir: {data}
pipelines: {{p: [motion: {{}}]}}
defaults: {{pipeline: p, detect: {{fps: 5}}}}
cameras:
  local1: {{sources: [{{url: "synthetic://local1", roles: [detect]}}]}}
""")
    log = tmp_path / "agent.log"
    status_path = data / "run" / "status.json"
    proc, node_id = start_agent(nats1.url, fleet, config, log)
    try:
        # the file's own camera is not run (and the log says so)
        assert "local1" in log.read_text() and "not run here" in log.read_text()

        # a revision by hand: its camera runs, the report says so
        fleet.write(node_id, 5, 1, {"cam1": camera("cam1", 5)})
        wait_for("revision 5 applied", lambda: fleet.report(lambda r: r.revision == 5), 20)
        assert fleet.reports[-1].cameras == ["cam1"] and not fleet.reports[-1].refused
        pids = wait_for("cam1's processes", lambda: (p := camera_pids(status_path)).keys()
                        >= {"cam1/ingest", "cam1/pipeline"} and p, 20)
        assert not any(name.startswith("local1") for name in pids)

        # a bad revision: refused, naming the camera and the key; cam1 keeps running, untouched
        fleet.write(node_id, 6, 1, {"cam1": camera("cam1", 5), "bad": camera("bad", 6, detect={"fps": -1})})
        refused = wait_for("revision 6 refused", lambda: fleet.report(lambda r: r.refused == 6), 20)
        assert refused.revision == 5 and refused.cameras == ["cam1"]
        assert any("cameras.bad.detect.fps" in e for e in refused.errors), refused.errors
        # garbage in the key: refused, said why, nothing changed
        fleet.write_raw(node_id, b"{not json")
        wait_for("the garbage refused",
                 lambda: fleet.report(lambda r: any("not JSON" in e for e in r.errors)), 20)
        assert fleet.reports[-1].revision == 5 and fleet.reports[-1].cameras == ["cam1"]
        # an older leader term is ignored: it would have removed cam1
        fleet.write(node_id, 7, 0, {})
        fleet.write(node_id, 8, 1, {"cam1": camera("cam1", 5)})
        wait_for("revision 8 applied", lambda: fleet.report(lambda r: r.revision == 8), 20)
        assert all(r.revision != 7 and r.refused != 7 for r in fleet.reports)
        assert camera_pids(status_path) == pids and running(pids) == set(pids)

        # frozen for longer than its lease: its camera processes stop by themselves, in time
        registered = fleet.registration_revision(node_id)
        frozen = time.monotonic()
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            # the coordinators count the node lost TTL + grace after the store got its last beat, which
            # was sent at most one beat interval before the SIGSTOP
            lost_at = TIMING.heartbeat_ttl_s + TIMING.grace_s - TIMING.heartbeat_s
            wait_for("the camera processes to stop by themselves", lambda: not running(pids), lost_at,
                     interval=0.05)
            stopped_after = time.monotonic() - frozen
            # meanwhile the leader moves cam1 away and places cam2 here
            fleet.write(node_id, 9, 1, {"cam2": camera("cam2", 9)})
            time.sleep(max(0.0, TIMING.heartbeat_ttl_s - (time.monotonic() - frozen)))  # past the lease
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert stopped_after < lost_at, f"stopped {stopped_after:.1f} s after SIGSTOP"

        # back: it registers again, says it was fenced, and runs exactly what its key says now
        back = wait_for("revision 9 applied", lambda: fleet.report(lambda r: r.revision == 9), 20)
        assert back.cameras == ["cam2"] and not back.fenced and not back.refused
        assert any(r.fenced for r in fleet.reports), "the agent never reported being fenced"
        assert fleet.registration_revision(node_id) > registered
        now = wait_for("cam2's processes", lambda: (p := camera_pids(status_path)).keys()
                       >= {"cam2/ingest", "cam2/pipeline"} and p, 20)
        assert not any(name.startswith("cam1") for name in now) and not running(pids)
        print(f"fenced: camera processes gone {stopped_after:.1f} s after SIGSTOP")
        assert "fenced" in log.read_text()

        # the key deleted: run nothing
        fleet.delete(node_id)
        wait_for("no camera", lambda: fleet.report(lambda r: r.cameras == [] and not r.fenced), 20)
        wait_for("cam2's processes gone", lambda: not running(now), 10)
    finally:
        stop_process(proc)


def test_a_revision_refused_for_a_missing_model_applies_once_the_file_is_there(
        nats1: NatsHarness, fleet: Fleet, tmp_path: Path) -> None:
    """A refusal that may pass (the model file not copied yet) is tried again; one for bad settings is not."""
    from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE, models_dir

    data = tmp_path / "agent"
    seed_capacity(data)
    model = tmp_path / "models" / "m.tflite"  # not there yet: the fleet's tooling copies it later
    config = tmp_path / "node.yaml"
    config.write_text(f"""
data_dir: {data}
models:
  m: {{path: {model}, runtime: tflite, input: {{width: 300, height: 300}},
      labels: {models_dir() / DEFAULT_LABELS_FILE}}}
detectors: {{cpu: {{runtime: tflite, threads: 1}}}}
pipelines:
  p: [motion: {{}}]
  d: [motion: {{}}, detect: {{model: m, detector: cpu}}]
defaults: {{pipeline: p, detect: {{fps: 5}}}}
""")
    log = tmp_path / "agent.log"
    status_path = data / "run" / "status.json"
    proc, node_id = start_agent(nats1.url, fleet, config, log)
    try:
        # settings that can never load: refused once, never tried again
        fleet.write(node_id, 2, 1, {"bad": camera("bad", 2, detect={"fps": -1})})
        wait_for("revision 2 refused", lambda: fleet.report(lambda r: r.refused == 2), 20)
        assert "revision 2 refused" in log.read_text() and "trying it again" not in log.read_text()

        fleet.write(node_id, 3, 1, {"cam1": camera("cam1", 3, pipeline="d")})
        refused = wait_for("revision 3 refused", lambda: fleet.report(lambda r: r.refused == 3), 20)
        assert refused.revision == 0 and refused.cameras == []
        assert any("m.tflite" in e for e in refused.errors), refused.errors
        assert "revision 2: trying it again" not in log.read_text()

        model.parent.mkdir()
        shutil.copyfile(models_dir() / DEFAULT_MODEL_FILE, model)
        # tried again 5 s after the refusal (then 10, 20...): applied without a new revision
        applied = wait_for("revision 3 applied", lambda: fleet.report(lambda r: r.revision == 3), 30)
        assert applied.cameras == ["cam1"] and not applied.refused and not applied.errors
        wait_for("cam1's processes",
                 lambda: camera_pids(status_path).keys() >= {"cam1/ingest", "cam1/pipeline"}, 30)
        text = log.read_text()
        assert "desired revision 3: trying it again" in text and "revision 2: trying it again" not in text
    finally:
        stop_process(proc)
