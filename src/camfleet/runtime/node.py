"""The node supervisor: a reconciler that makes this machine's processes match a configuration.

:class:`Node` runs, for a validated :class:`~camfleet.config.Config`:

* the detector processes the pipelines use (each a
  :class:`~camfleet.detect.service.DetectorManager`), shared by all cameras;
* per enabled camera an ingest process, a pipeline process and, when the
  camera records, a recorder process (:mod:`camfleet.runtime.children`).

Every camera process beats in a shared-memory table
(:mod:`camfleet.runtime.heartbeat`); each supervisor pass turns the beats into
a state with a reason (starting, healthy, degraded, unresponsive, restarting,
failed). A process that exits or stops beating is restarted with exponential
back-off; too many failures within a window make it ``failed``, retried
slowly. :meth:`Node.apply_config` computes the least change
(:mod:`camfleet.runtime.reconcile`) and touches only the cameras that changed;
zones, masks and element settings reach a running pipeline without a restart.
Camera processes append events, activity spans and recording segments to the
node's durable outbox (:mod:`camfleet.events`); the node pumps it to the store
(or ``events.jsonl``) and to the listeners.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import psutil

from camfleet.config import Config, ConfigError
from camfleet.detect.models import DEFAULT_MODEL_FILE, ModelSpec, default_model_spec
from camfleet.detect.service import DetectorManager, DetectorSettings, read_heartbeat
from camfleet.events import Journal, OutboxSink, Pump, PumpSettings, journal_path
from camfleet.events.dbsink import DatabaseSink
from camfleet.events.jsonl import JsonlSink
from camfleet.framebus.inspect import list_rings
from camfleet.pipeline.build import camera_pipeline

from . import heartbeat as hb
from . import reconcile
from .children import ChildSpec, run_child
from .control import CameraStatus, HealthState, Listener, NodeStatus, ProcessStatus, ReloadResult
from .health import RestartPolicy, worst

log = logging.getLogger("camfleet.runtime")

PASS_S = 0.25
"""Seconds between supervisor passes."""

RETENTION_PERIOD_S = 60.0
"""Seconds between retention passes over the recordings."""

STARTING_GRACE_S = 5.0
"""A process that says "degraded" this soon after starting is still reported as starting."""


PRELOAD = [f"camfleet.pipeline.{m}" for m in ("motion", "detect", "track", "zones", "events", "snapshot")]
"""Modules the forkserver imports before it forks camera processes."""


class NodeAlreadyRunning(RuntimeError):
    """Another live node uses the same data directory."""


def model_spec(config: Config, model_id: str) -> ModelSpec:
    """The :class:`ModelSpec` of model ``model_id`` of the configuration."""
    m = config.models[model_id]
    path = config.resolve_path(m.path)
    if path.name == DEFAULT_MODEL_FILE and m.runtime == "tflite":
        return default_model_spec(path.parent)  # the default model, sha256-checked
    labels: Path | tuple[str, ...] | None
    if isinstance(m.labels, list):
        labels = tuple(m.labels)
    else:
        labels = config.resolve_path(m.labels) if m.labels else None
    return ModelSpec(
        id=model_id, path=path, runtime=m.runtime, input_size=(m.input.width, m.input.height),
        labels=labels, output="ssd_postprocess" if m.runtime == "tflite" else "yolov8",
    )


def detector_models(config: Config) -> dict[str, str]:
    """Which model each used detector serves (detector name -> model id), enabled cameras only."""
    used: dict[str, str] = {}
    for name, cam in config.cameras.items():
        if not cam.enabled:
            continue
        for element in config.pipeline_of(name):
            if element.name != "detect":
                continue
            detector = str(element.params.get("detector", "cpu"))
            model = str(element.params.get("model", "ssd-mobilenet-v2"))
            if used.setdefault(detector, model) != model:
                raise ValueError(
                    f"detector {detector!r} is asked to run two models ({used[detector]!r} and "
                    f"{model!r}); give each model its own detector"
                )
    return used


def describe_exit(code: int | None) -> str:
    """A process exit code in words (negative codes are signals)."""
    if code is None:
        return "did not exit"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


class _Cpu:
    """CPU use of one process in percent of one core, over windows of at least a second."""

    def __init__(self, pid: int | None) -> None:
        self.value = 0.0
        self._ps: psutil.Process | None = None
        self._last: tuple[float, float] | None = None
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                self._ps = psutil.Process(pid)

    @property
    def pid(self) -> int | None:
        return self._ps.pid if self._ps is not None else None

    def sample(self, now: float) -> float:
        """Update and return the CPU percentage, and the resident memory in MiB."""
        if self._ps is None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            t = self._ps.cpu_times()
            used = t.user + t.system
            if self._last is None:
                self._last = (now, used)
            elif now - self._last[0] >= 1.0:
                self.value = 100.0 * (used - self._last[1]) / (now - self._last[0])
                self._last = (now, used)
            return self._ps.memory_info().rss / 2**20
        return 0.0


class _Rate:
    """Per-second rate of a growing counter, smoothed over about two seconds."""

    def __init__(self) -> None:
        self.value = 0.0
        self._last: tuple[float, float] | None = None

    def update(self, counter: float, now: float) -> None:
        if self._last is None or counter < self._last[1]:
            self._last = (now, counter)
            return
        dt = now - self._last[0]
        if dt >= 1.0:
            rate = (counter - self._last[1]) / dt
            self.value = rate if self.value == 0.0 else 0.5 * self.value + 0.5 * rate
            self._last = (now, counter)


@dataclass
class _Proc:
    """One supervised camera process and what the supervisor knows about it."""

    camera: str
    kind: str
    spec: ChildSpec
    policy: RestartPolicy
    proc: BaseProcess | None = None
    state: HealthState = "starting"
    reason: str = ""
    last_error: str | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float | None = None
    kill_reason: str | None = None
    ps: _Cpu | None = None
    cpu: float = 0.0
    rss_mb: float = 0.0
    beat_age: float | None = None
    rates: dict[int, _Rate] = field(default_factory=dict)
    counters: tuple[float, ...] = (0.0,) * 8
    infer_ms: float = 0.0
    _infer_last: tuple[float, float] = (0.0, 0.0)

    @property
    def name(self) -> str:
        return f"{self.camera}/{self.kind}"


class Node:
    """Runs a configuration on this machine; implements :class:`~camfleet.runtime.control.NodeControl`.

    ``loader`` re-reads the configuration for :meth:`reload` (for example the
    file ``camfleet run`` was given); ``store`` (a
    :class:`camfleet.store.Store`) receives events, activity spans and recording segments
    from the node's outbox (``<data_dir>/outbox.db``); without one, events go to
    ``<data_dir>/events.jsonl``.
    """

    def __init__(self, config: Config, *, loader: Callable[[], Config] | None = None,
                 store: Any = None, log_router: Any = None, node_key: str = "local") -> None:
        self.config = config
        self.node_key = node_key
        self._loader = loader
        self._store = store
        self._outbox: Pump | None = None
        self._log_router = log_router
        self._ctx = mp.get_context("forkserver")
        # the built-in elements take seconds to import (trackers, OpenCV): once, in the forkserver,
        # so that a restarted pipeline is running again in well under a second
        self._ctx.set_forkserver_preload(["camfleet.runtime.children", *PRELOAD])
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._detectors: dict[str, DetectorManager] = {}
        self._detector_keys: dict[str, Any] = {}
        self._instances: dict[str, list[str]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._assign: dict[str, dict[str, str]] = {}
        self._procs: dict[tuple[str, str], _Proc] = {}
        self._controls: dict[str, Any] = {}
        self._listeners: list[Listener] = []
        self._table: hb.HeartbeatTable | None = None
        self._threads: list[threading.Thread] = []
        self._last_reload = ReloadResult()
        self._started_at = 0.0
        self._camera_states: dict[str, HealthState] = {}
        self._status = NodeStatus(node=node_key, pid=os.getpid(), started_at=0.0, at=0.0)
        self._det_ps: dict[str, _Cpu] = {}

    # ------------------------------------------------------------------ paths

    @property
    def run_dir(self) -> Path:
        """``<data_dir>/run``: the pid file and the status file."""
        return self.config.data_path / "run"

    @property
    def status_path(self) -> Path:
        """The status snapshot ``camfleet status`` reads, rewritten every second."""
        return self.run_dir / "status.json"

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Claim the data directory, start detectors and every enabled camera, then supervise."""
        cfg = self.config
        cfg.data_path.mkdir(parents=True, exist_ok=True)
        self._claim_run_dir()
        self._reclaim_rings()
        self._started_at = time.time()
        self._table = hb.HeartbeatTable(self.node_key)
        self._start_outbox()
        try:
            self._sync_detectors(cfg)
            for name in cfg.cameras:
                for kind in reconcile.process_kinds(cfg, name):
                    self._add_proc(name, kind)
        except BaseException:
            self.stop()
            raise
        loops = [(self._supervise, "supervisor")]
        if self._store is not None:
            loops.append((self._retention, "retention"))
        for target, tname in loops:
            t = threading.Thread(target=target, name=f"camfleet-{tname}", daemon=True)
            t.start()
            self._threads.append(t)

    def supervise(self, period: float = PASS_S) -> None:
        """Block until :meth:`stop` (supervision itself runs in a thread started by :meth:`start`)."""
        self._stop.wait()

    def _claim_run_dir(self) -> None:
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        pid_file = self.run_dir / "camfleet.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(pid_file.read_text().strip())
            if pid != os.getpid() and psutil.pid_exists(pid):
                with contextlib.suppress(psutil.Error):
                    if "camfleet" in " ".join(psutil.Process(pid).cmdline()):
                        raise NodeAlreadyRunning(
                            f"a camfleet node is already running with data directory {self.config.data_path} "
                            f"(pid {pid}); stop it first (kill {pid})"
                        )
            log.info("reclaiming what a previous node (pid %d) left behind", pid)
        tmp = pid_file.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.chmod(0o600)
        os.replace(tmp, pid_file)

    @staticmethod
    def _reclaim_rings() -> None:
        """Remove ring segments whose publisher is dead (left by a node killed with -9)."""
        for info in list_rings():
            if not info.publisher_alive:
                with contextlib.suppress(FileNotFoundError):
                    Path(info.path).unlink()
                    log.info("removed stale ring %s (%s)", info.key, info.kind)

    # ------------------------------------------------------------------ detectors

    def _sync_detectors(self, cfg: Config) -> list[str]:
        """Start, stop or restart detector processes to match ``cfg``; returns those (re)started."""
        wanted: dict[str, Any] = {}
        for detector, model in detector_models(cfg).items():
            d = cfg.detectors[detector]
            wanted[detector] = (d.model_dump(mode="json"), model, cfg.models[model].model_dump(mode="json"))
        changed = []
        for detector in list(self._instances):
            if self._detector_keys.get(detector) != wanted.get(detector):
                for instance in self._instances.pop(detector):
                    manager = self._detectors.pop(instance)
                    with contextlib.suppress(Exception):
                        manager.stop(timeout=2.0)
                    self._det_ps.pop(instance, None)
                self._detector_keys.pop(detector, None)
                for assigned in self._assign.values():
                    assigned.pop(detector, None)
        for detector, key in wanted.items():
            if detector in self._instances:
                continue
            d = cfg.detectors[detector]
            spec = model_spec(cfg, key[1])
            assert spec.input_size is not None
            self._sizes[detector] = spec.input_size
            names = [detector] if d.processes == 1 else [f"{detector}-{i}" for i in range(d.processes)]
            self._instances[detector] = names
            self._detector_keys[detector] = key
            for instance in names:
                log_init = None
                if self._log_router is not None:
                    from .logfiles import child_logging  # noqa: PLC0415

                    log_init = functools.partial(child_logging, self._log_router.address, None,
                                                 f"detector-{instance}", cfg.logging.level)
                settings = DetectorSettings(name=instance, model=spec, threads=d.threads,
                                            max_batch=d.max_batch, max_wait_ms=d.max_wait_ms,
                                            log_init=log_init)
                manager = DetectorManager(settings)
                manager.start()
                self._detectors[instance] = manager
            changed.append(detector)
        return changed

    def _detectors_for(self, camera: str, cfg: Config) -> dict[str, tuple[str, tuple[int, int]]]:
        """The detector processes serving ``camera``: sticky, least-loaded on first use."""
        assigned = self._assign.setdefault(camera, {})
        used = {str(e.params.get("detector", "cpu")) for e in cfg.pipeline_of(camera) if e.name == "detect"}
        for detector in used:
            if detector in assigned:
                continue
            load = {i: 0 for i in self._instances[detector]}
            for other in self._assign.values():
                if other.get(detector) in load:
                    load[other[detector]] += 1
            assigned[detector] = min(load, key=lambda i: (load[i], i))
        return {d: (assigned[d], self._sizes[d]) for d in used}

    # ------------------------------------------------------------------ camera processes

    def _add_proc(self, camera: str, kind: str) -> _Proc:
        cfg = self.config
        assert self._table is not None
        control = None
        if kind == "pipeline":
            control = self._ctx.Queue()
            self._controls[camera] = control
        spec = ChildSpec(
            camera=camera, kind=kind, config=cfg, health_path=str(self._table.path),
            slot=self._table.allocate(), parent_pid=os.getpid(),
            outbox=str(journal_path(self.config.data_path)), control=control,
            log_address=self._log_router.address if self._log_router is not None else None,
            detectors=self._detectors_for(camera, cfg) if kind == "pipeline" else {},
        )
        p = _Proc(camera, kind, spec, RestartPolicy(cfg.runtime))
        self._procs[(camera, kind)] = p
        self._spawn(p)
        return p

    def _spawn(self, p: _Proc) -> None:
        assert self._table is not None
        self._table.clear(p.spec.slot)
        p.proc = self._ctx.Process(target=run_child, args=(p.spec,), name=f"camfleet-{p.name}")
        p.proc.start()
        p.started_at = time.monotonic()
        p.next_start = None
        p.kill_reason = None
        p.state, p.reason = "starting", ""
        p.ps = _Cpu(p.proc.pid)
        p.cpu = 0.0
        p.rates = {}

    def _stop_procs(self, procs: list[_Proc], timeout: float | None = None) -> None:
        """Stop processes: SIGTERM (their stop event), then SIGTERM's hard path, then SIGKILL."""
        timeout = self.config.runtime.stop_timeout if timeout is None else timeout
        live = [p.proc for p in procs if p.proc is not None and p.proc.is_alive()]
        for proc in live:
            with contextlib.suppress(OSError):
                proc.terminate()  # the child's handler sets its stop event: a clean stop
        deadline = time.monotonic() + timeout * 0.7
        for proc in live:
            proc.join(max(deadline - time.monotonic(), 0.0))
        late = [proc for proc in live if proc.is_alive()]
        for proc in late:
            with contextlib.suppress(OSError):
                proc.terminate()  # a second SIGTERM leaves at once (SystemExit in the child)
        deadline = time.monotonic() + timeout * 0.3
        for proc in late:
            proc.join(max(deadline - time.monotonic(), 0.0))
        for proc in late:
            if proc.is_alive():
                log.warning("%s did not stop within %.1f s; killing it", proc.name, timeout)
                proc.kill()
                proc.join(2.0)
        for p in procs:
            if p.proc is not None:
                p.proc.join(0.1)

    def _remove_procs(self, procs: list[_Proc]) -> None:
        for p in procs:
            self._procs.pop((p.camera, p.kind), None)
        self._stop_procs(procs)
        assert self._table is not None
        for p in procs:
            self._table.release(p.spec.slot)
            if p.kind == "pipeline":
                self._controls.pop(p.camera, None)

    # ------------------------------------------------------------------ supervision

    def _supervise(self) -> None:
        last_file = 0.0
        while not self._stop.wait(PASS_S):
            try:
                with self._lock:
                    now = time.monotonic()
                    for p in list(self._procs.values()):
                        self._check(p, now)
                    status = self._build_status()
                    self._status = status
                changes = self._state_changes(status)
                for message in changes:
                    self._notify(message)
                if time.monotonic() - last_file >= 1.0 or changes:
                    self._write_status(status)
                    last_file = time.monotonic()
            except Exception:  # the supervisor must outlive any one bad pass
                log.exception("supervisor pass failed")

    def _check(self, p: _Proc, now: float) -> None:
        rt = self.config.runtime
        if p.proc is None:
            if p.next_start is not None and now >= p.next_start:
                p.restarts += 1
                log.info("starting %s again (restart %d)", p.name, p.restarts, extra={"camera": p.camera})
                self._spawn(p)
            return
        if not p.proc.is_alive():
            reason = p.kill_reason or describe_exit(p.proc.exitcode)
            p.proc.join(0)
            p.proc = None
            decision = p.policy.failure(now)
            p.last_error = reason
            p.next_start = now + decision.delay_s
            if decision.failed:
                p.state = "failed"
                p.reason = (f"{decision.failures_in_window} failures within {rt.failure_window:g} s, last: "
                            f"{reason}; next try in {decision.delay_s:g} s")
                log.error("%s failed: %s", p.name, p.reason, extra={"camera": p.camera})
            else:
                p.state = "restarting"
                p.reason = f"{reason}; restarting in {decision.delay_s:.1f} s"
                log.warning("%s %s", p.name, p.reason, extra={"camera": p.camera})
            return
        assert self._table is not None
        beat = self._table.read(p.spec.slot)
        p.beat_age = beat.age_s
        if beat.age_s is None:
            if now - p.started_at > rt.startup_grace:
                self._kill(p, f"no heartbeat within {rt.startup_grace:g} s of starting")
            else:
                p.state, p.reason = "starting", ""
        elif beat.age_s > rt.heartbeat_timeout:
            self._kill(p, f"unresponsive: no heartbeat for {beat.age_s:.1f} s")
        else:
            if beat.state == hb.OK:
                p.state, p.reason = "healthy", ""
            elif now - p.started_at < STARTING_GRACE_S:
                p.state, p.reason = "starting", beat.reason
            else:
                p.state, p.reason = "degraded", beat.reason
            p.policy.running_since(p.started_at, now)
        self._measure(p, beat, now)

    def _kill(self, p: _Proc, reason: str) -> None:
        p.state, p.reason, p.kill_reason = "unresponsive", reason, reason
        log.warning("%s %s; killing it", p.name, reason, extra={"camera": p.camera})
        if p.proc is not None and p.proc.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(p.proc.pid, signal.SIGKILL)

    def _measure(self, p: _Proc, beat: hb.Beat, now: float) -> None:
        p.counters = beat.counters
        for index in (hb.FRAMES, hb.SKIPPED, hb.DET_REQUESTS, hb.EXTRA):
            p.rates.setdefault(index, _Rate()).update(beat.counters[index], now)
        reqs, ms = beat.counters[hb.DET_REQUESTS], beat.counters[hb.INFER_MS]
        if reqs - p._infer_last[0] >= 1:
            p.infer_ms = (ms - p._infer_last[1]) / (reqs - p._infer_last[0])
            p._infer_last = (reqs, ms)
        if p.ps is not None:
            p.rss_mb = p.ps.sample(now)
            p.cpu = p.ps.value

    # ------------------------------------------------------------------ status

    def _build_status(self) -> NodeStatus:
        cfg = self.config
        status = NodeStatus(node=self.node_key, pid=os.getpid(), started_at=self._started_at, at=time.time(),
                            reload=self._last_reload)
        for name, cam in cfg.cameras.items():
            procs = [p for (c, _), p in self._procs.items() if c == name]
            cs = CameraStatus(name=name, state="stopped" if not cam.enabled else "starting",
                              enabled=cam.enabled)
            for p in procs:
                rate = {i: r.value for i, r in p.rates.items()}
                metrics = {"frames": p.counters[hb.FRAMES], "fps": rate.get(hb.FRAMES, 0.0)}
                if p.kind == "pipeline":
                    metrics.update(skipped_fps=rate.get(hb.SKIPPED, 0.0),
                                   detector_rps=rate.get(hb.DET_REQUESTS, 0.0),
                                   inference_ms=p.infer_ms, lag_ms=p.counters[hb.LAG_MS],
                                   errors=p.counters[hb.ERRORS], updates=p.counters[hb.EXTRA])
                    cs.processed_fps = rate.get(hb.FRAMES, 0.0)
                    cs.skipped_fps = rate.get(hb.SKIPPED, 0.0)
                    cs.detector_rps = rate.get(hb.DET_REQUESTS, 0.0)
                    cs.inference_ms = p.infer_ms
                elif p.kind == "ingest":  # decoded: every frame of the stream; fps: those published
                    metrics.update(packets=p.counters[hb.PACKETS], decoded=p.counters[hb.EXTRA],
                                   decode_fps=rate.get(hb.EXTRA, 0.0))
                    cs.decode_fps = rate.get(hb.EXTRA, 0.0)
                elif p.kind == "recorder":
                    metrics.update(packets=p.counters[hb.FRAMES], segments=p.counters[hb.EXTRA])
                    del metrics["fps"]
                cs.processes[p.kind] = ProcessStatus(
                    name=p.name, kind=p.kind,  # type: ignore[arg-type]
                    state=p.state, reason=p.reason, pid=p.proc.pid if p.proc is not None else None,
                    restarts=p.restarts, last_error=p.last_error,
                    heartbeat_age_s=round(p.beat_age, 3) if p.beat_age is not None else None,
                    cpu_percent=round(p.cpu, 1), rss_mb=round(p.rss_mb, 1),
                    metrics={k: round(v, 3) for k, v in metrics.items()},
                )
                cs.cpu_percent += p.cpu
                cs.rss_mb += p.rss_mb
                cs.restarts += p.restarts
                cs.last_error = p.last_error or cs.last_error
            if procs:
                cs.state = worst(p.state for p in procs)
                sick = [p for p in procs if p.state == cs.state and p.reason]
                cs.reason = f"{sick[0].kind}: {sick[0].reason}" if sick and cs.state != "healthy" else ""
            status.cameras[name] = cs
        for instance, manager in self._detectors.items():
            status.detectors[instance] = self._detector_status(instance, manager)
            for cs in status.cameras.values():
                cs.queue_depth = max(cs.queue_depth, int(status.detectors[instance].metrics.get("queued", 0)))
        return status

    def _detector_status(self, instance: str, manager: DetectorManager) -> ProcessStatus:
        beat = read_heartbeat(instance)
        pid = manager.pid
        age = (time.monotonic_ns() - beat.beat_ns) / 1e9 if beat is not None else None
        alive = pid is not None and psutil.pid_exists(pid) and beat is not None and beat.pid == pid
        state: HealthState = "healthy" if alive and age is not None and age < 5.0 else "restarting"
        ps = self._det_ps.get(instance)
        if pid is not None and (ps is None or ps.pid != pid):
            ps = self._det_ps[instance] = _Cpu(pid)
        cpu = rss = 0.0
        if ps is not None:
            rss = ps.sample(time.monotonic())
            cpu = ps.value
        metrics: dict[str, float] = {}
        if beat is not None:
            metrics = {"batches": beat.batches, "images": beat.images, "queued": beat.queued,
                       "mean_batch": round(beat.mean_batch, 2),
                       "inference_ms": round(beat.infer_ns / beat.batches / 1e6, 2) if beat.batches else 0.0}
        return ProcessStatus(
            name=f"detector/{instance}", kind="detector", state=state,
            reason="" if state == "healthy" else (manager.last_reason or "starting"), pid=pid,
            restarts=manager.restarts, last_error=manager.last_reason or None,
            heartbeat_age_s=round(age, 3) if age is not None else None, cpu_percent=round(cpu, 1),
            rss_mb=round(rss, 1), metrics=metrics,
        )

    def _state_changes(self, status: NodeStatus) -> list[dict[str, Any]]:
        out = []
        for name, cs in status.cameras.items():
            if self._camera_states.get(name) != cs.state:
                self._camera_states[name] = cs.state
                out.append({"type": "status", "camera": name, "state": cs.state, "reason": cs.reason})
        for name in set(self._camera_states) - set(status.cameras):
            del self._camera_states[name]
            out.append({"type": "status", "camera": name, "state": "removed", "reason": ""})
        return out

    def _write_status(self, status: NodeStatus) -> None:
        with contextlib.suppress(OSError):
            tmp = self.status_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(status.to_json(), f)
            os.replace(tmp, self.status_path)

    def status(self) -> NodeStatus:
        """The latest supervisor snapshot (refreshed every :data:`PASS_S` seconds)."""
        return self._status

    def current_config(self) -> Config:
        """The configuration the node runs now."""
        return self.config

    def processes(self) -> dict[str, int | None]:
        """Name -> pid of every process the node runs."""
        with self._lock:
            out: dict[str, int | None] = {f"detector/{n}": m.pid for n, m in self._detectors.items()}
            out.update({p.name: p.proc.pid if p.proc is not None else None for p in self._procs.values()})
            return out

    # ------------------------------------------------------------------ events

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each event update and camera state change; returns the unsubscribe."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def _notify(self, message: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.exception("a status/event listener failed")

    def _start_outbox(self) -> None:
        """Close the events a previous run left open, then pump the outbox to the sinks.

        The sink is the store (or ``<data_dir>/events.jsonl``); listeners get the tail.
        Called before any camera process runs.
        """
        path = journal_path(self.config.data_path)
        with Journal(path) as journal:
            journal.close_open_events()  # every camera: their pipelines are gone
            still_open = set(journal.open_events())
        sink: OutboxSink
        if self._store is not None:
            db = DatabaseSink(self._store)
            try:  # events the database has open whose end never reached the outbox
                db.close_stale(still_open)
            except Exception as exc:  # the database may be down: the outbox waits for it
                log.warning("could not close the database's stale open events: %s", exc)
            sink = db
        else:
            sink = JsonlSink(self.config.data_path / "events.jsonl")
        settings = PumpSettings(max_entries=self.config.outbox.max_entries,
                                keep_delivered=self.config.outbox.keep_delivered)
        self._outbox = Pump(path, [sink], settings=settings)
        self._outbox.add_listener(self._notify)
        self._outbox.start()

    def _retention(self) -> None:
        """Apply recording retention and the storage floor every :data:`RETENTION_PERIOD_S` seconds."""
        from camfleet.recording.check import check_storage  # noqa: PLC0415 - only with a store
        from camfleet.recording.retention import RetentionManager  # noqa: PLC0415

        if self.config.recordings_path.exists():
            try:  # a recorder killed between rename and report leaves a file without a row
                checked = check_storage(self._store, self.config.recordings_path, repair=True)
                log.info("storage check at start: %d segment(s), %d missing file(s) removed from the index, "
                         "%d unindexed file(s) indexed", checked.rows, checked.rows_deleted,
                         len(checked.files_indexed))
            except Exception:
                log.exception("storage check failed")
        while not self._stop.wait(RETENTION_PERIOD_S):
            if not any(cam.record.enabled for cam in self.config.cameras.values()):
                continue
            try:
                report = RetentionManager(self._store, self.config).run_once()
                if report.deleted:
                    log.info("retention: deleted %d segment(s), %.1f MiB", len(report.deleted),
                             report.bytes_freed / 2**20)
            except Exception:
                log.exception("retention pass failed")

    # ------------------------------------------------------------------ reconfiguration

    def reload(self) -> ReloadResult:
        """Read the configuration again (the ``loader``) and apply it; a bad one changes nothing."""
        if self._loader is None:
            return self._reject(["this node runs a configuration that was not read from a file"])
        try:
            new = self._loader()
        except ConfigError as exc:
            return self._reject([str(issue) for issue in exc.issues])
        except (OSError, ValueError) as exc:
            return self._reject([str(exc)])
        return self.apply_config(new)

    def _reject(self, errors: list[str]) -> ReloadResult:
        with self._lock:
            result = ReloadResult(generation=self._last_reload.generation, ok=False, at=time.time(),
                                  errors=errors)
            self._last_reload = result
        log.error("configuration rejected, nothing changed: %s", "; ".join(errors))
        self._refresh_status()
        return result

    def _refresh_status(self) -> None:
        with self._lock:
            self._status = self._build_status()
        self._write_status(self._status)

    def _validate(self, new: Config) -> list[str]:
        errors = []
        try:
            detector_models(new)
        except ValueError as exc:
            errors.append(str(exc))
        for name, cam in new.cameras.items():
            if not cam.enabled:
                continue
            try:
                camera_pipeline(new, name, services={"detectors": {}})
            except Exception as exc:
                errors.append(f"cameras.{name}: {exc}")
        return errors

    def apply_config(self, config: Config, *, base: Config | None = None) -> ReloadResult:
        """Make the running processes match ``config``, touching only the cameras that changed.

        The configuration is checked first (detectors, every pipeline's
        element settings); when it does not pass, nothing changes and the
        result lists the errors. ``base`` is the configuration ``config``
        was derived from: when another change (a file reload) was applied
        in between, nothing changes either, instead of undoing that change.
        """
        errors = self._validate(config)
        if errors:
            return self._reject(errors)
        with self._lock:
            if base is not None and base is not self.config:
                return self._reject(["the configuration changed while this change was prepared "
                                     f"(now generation {self._last_reload.generation}); try again"])
            old = self.config
            plan = reconcile.plan(old, config)
            self.config = config
            try:
                restarted_detectors = set(self._sync_detectors(config))
            except Exception as exc:
                self.config = old
                self._sync_detectors(old)
                return self._reject([f"detectors: {exc}"])
            result = ReloadResult(generation=self._last_reload.generation + 1, ok=True, at=time.time(),
                                  added=plan.added, removed=plan.removed)
            to_stop: list[_Proc] = []
            to_start: list[tuple[str, str]] = []
            for name, cp in plan.cameras.items():
                for kind in cp.stop + cp.restart:
                    p = self._procs.get((name, kind))
                    if p is not None:
                        to_stop.append(p)
                to_start += [(name, kind) for kind in cp.start + cp.restart]
                if cp.restart and name not in plan.added:
                    result.restarted.append(f"{name}/" + ",".join(cp.restart))
                if cp.update and "pipeline" not in cp.restart:
                    result.updated.append(name)
            for name in plan.removed:
                self._assign.pop(name, None)
            self._remove_procs(to_stop)
            for name, kind in to_start:
                self._add_proc(name, kind)
            for (name, kind), p in self._procs.items():
                p.spec.config = config  # restarts after a crash use the configuration in force
                p.policy.update(config.runtime)
                if kind == "pipeline" and name in result.updated:
                    self._controls[name].put(config)
            if restarted_detectors:
                result.restarted += [f"detector/{d}" for d in sorted(restarted_detectors)]
            if plan.needs_node_restart:
                result.errors.append("changes to " + ", ".join(plan.needs_node_restart)
                                     + " take effect when the node restarts")
            if self._log_router is not None:
                self._log_router.update(config.logging)
                for name in plan.removed:
                    self._log_router.close_camera(name)
            self._last_reload = result
        self._refresh_status()
        log.info("configuration applied (generation %d): added %s, removed %s, restarted %s, updated %s",
                 result.generation, result.added, result.removed, result.restarted, result.updated)
        return result

    # ------------------------------------------------------------------ stop

    def stop(self, timeout: float | None = None) -> None:
        """Stop every process (stop event, then terminate, then kill) and release what the node holds."""
        self._stop.set()
        for t in self._threads:
            t.join(2.0)
        with self._lock:
            procs = list(self._procs.values())
            self._procs.clear()
            self._stop_procs(procs, timeout)  # cameras first: their pipelines still talk to detectors
            managers = list(self._detectors.values())
            self._detectors.clear()
            self._instances.clear()
            stoppers = [threading.Thread(target=m.stop, kwargs={"timeout": 2.0}, daemon=True)
                        for m in managers]
            for t in stoppers:
                t.start()
            for t in stoppers:
                t.join(5.0)
        if self._outbox is not None:  # after the cameras: their last appends are journalled
            self._outbox.stop(timeout=5.0)
        if self._table is not None:
            self._table.close()
            self._table = None
        for path in (self.status_path, self.run_dir / "camfleet.pid"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
