"""Status and metrics: CPU and memory of each process, counter rates, the node's status snapshot and file.

:class:`StatusBoard` turns what the supervisor knows of each process (state,
beat, restarts) into a :class:`~camfleet.runtime.control.NodeStatus`, with
each kind's named metrics (:meth:`camfleet.runtime.kinds.ProcessKind.metrics`),
reports camera state changes as status messages, and writes the snapshot to
``status.json`` (what ``camfleet status`` reads).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Any

import psutil

from camfleet.config import Config

from .control import CameraStatus, HealthState, NodeStatus, ProcessStatus, ReloadResult
from .health import worst
from .kinds import CameraKind, Sample
from .supervisor import Supervised


class ProcessCpu:
    """CPU use of one process in percent of one core (over windows of at least a second), and its RSS."""

    def __init__(self, pid: int | None) -> None:
        self.value = 0.0
        self.rss_mb = 0.0
        self.pid = pid
        self._ps: psutil.Process | None = None
        self._last: tuple[float, float] | None = None
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                self._ps = psutil.Process(pid)

    def sample(self, now: float) -> None:
        """Update :attr:`value` (percent of one core) and :attr:`rss_mb` (MiB); ``now`` in monotonic s."""
        if self._ps is None:
            return
        with contextlib.suppress(psutil.Error):
            t = self._ps.cpu_times()
            used = t.user + t.system
            if self._last is None:
                self._last = (now, used)
            elif now - self._last[0] >= 1.0:
                self.value = 100.0 * (used - self._last[1]) / (now - self._last[0])
                self._last = (now, used)
            self.rss_mb = self._ps.memory_info().rss / 2**20


class Rate:
    """Per-second rate of a growing counter, smoothed over about two seconds."""

    def __init__(self) -> None:
        self.value = 0.0
        self._last: tuple[float, float] | None = None

    def update(self, counter: float, now: float) -> None:
        """Take the counter's value at ``now`` (monotonic s); a counter that went back starts over."""
        if self._last is None or counter < self._last[1]:
            self._last = (now, counter)
            return
        dt = now - self._last[0]
        if dt >= 1.0:
            rate = (counter - self._last[1]) / dt
            self.value = rate if self.value == 0.0 else 0.5 * self.value + 0.5 * rate
            self._last = (now, counter)


class Meter:
    """What is measured of one process between its starts: CPU, RSS, rates and running means."""

    def __init__(self, pid: int | None) -> None:
        self.cpu = ProcessCpu(pid)
        self.rates: dict[int, Rate] = {}
        self.means: dict[str, float] = {}
        self._mean_last: dict[str, tuple[float, float]] = {}
        self.sample = Sample()

    def update(self, p: Supervised, now: float) -> None:
        """Measure ``p`` after a supervisor pass (``now`` in monotonic s)."""
        counters = p.beat.counters or self.sample.counters
        for index in p.kind.rated:
            if index < len(counters):
                self.rates.setdefault(index, Rate()).update(counters[index], now)
        for name, (num, den) in p.kind.means.items():
            if max(num, den) >= len(counters):
                continue
            last_den, last_num = self._mean_last.get(name, (0.0, 0.0))
            if counters[den] - last_den >= 1:  # a mean over the requests since the last one
                self.means[name] = (counters[num] - last_num) / (counters[den] - last_den)
                self._mean_last[name] = (counters[den], counters[num])
        self.cpu.sample(now)
        self.sample = Sample(counters, {i: r.value for i, r in self.rates.items()}, dict(self.means))


class StatusBoard:
    """Builds the node's status from its supervised processes; writes ``status.json``; not thread-safe."""

    def __init__(self, node_key: str, status_path: Path) -> None:
        self.node_key = node_key
        self.status_path = status_path
        self.started_at = 0.0
        self.current = NodeStatus(node=node_key, pid=os.getpid(), started_at=0.0, at=0.0)
        self._meters: dict[str, Meter] = {}
        self._camera_states: dict[str, HealthState] = {}
        self._last_file = 0.0

    def measure(self, entries: list[Supervised], now: float) -> None:
        """Sample every running process (``now`` in monotonic s); meters restart with a new pid."""
        names = set()
        for p in entries:
            names.add(p.name)
            if p.proc is None:
                continue
            meter = self._meters.get(p.name)
            if meter is None or meter.cpu.pid != p.pid:
                meter = self._meters[p.name] = Meter(p.pid)
            meter.update(p, now)
        for gone in set(self._meters) - names:
            del self._meters[gone]

    def build(self, config: Config, entries: list[Supervised], reload: ReloadResult) -> NodeStatus:
        """The status of ``entries`` under ``config``; also kept as :attr:`current`."""
        status = NodeStatus(node=self.node_key, pid=os.getpid(), started_at=self.started_at, at=time.time(),
                            reload=reload)
        for name, cam in config.cameras.items():
            cs = CameraStatus(name=name, state="stopped" if not cam.enabled else "starting",
                              enabled=cam.enabled)
            procs = [p for p in entries if p.camera == name]
            for p in procs:
                ps = self._process_status(p)
                cs.processes[p.kind.name] = ps
                if isinstance(p.kind, CameraKind):
                    p.kind.add_to_camera(cs, self._sample(p))
                cpu, rss = self._usage(p)
                cs.cpu_percent += cpu  # summed before rounding: small shares still count
                cs.rss_mb += rss
                cs.restarts += p.restarts
                cs.last_error = p.last_error or cs.last_error
            ended = [p.ended_at for p in procs if p.ended_at is not None]
            cs.ended_at = min(ended) if ended else None  # the source's end, the first process to end
            if procs:
                # all held by a closed gate (a fenced fleet node): stopped, not "healthy"
                cs.state = "stopped" if all(p.held for p in procs) else worst(p.state for p in procs)
                sick = [p for p in procs if p.state == cs.state and p.reason]
                cs.reason = f"{sick[0].kind.name}: {sick[0].reason}" if sick and cs.state != "healthy" else ""
            status.cameras[name] = cs
        for p in entries:
            if p.camera is None:
                ps = status.detectors[p.name.partition("/")[2]] = self._process_status(p)
                for cs in status.cameras.values():
                    cs.queue_depth = max(cs.queue_depth, int(ps.metrics.get("queued", 0)))
        self.current = status
        return status

    def _sample(self, p: Supervised) -> Sample:
        meter = self._meters.get(p.name)
        return meter.sample if meter is not None else Sample()

    def _usage(self, p: Supervised) -> tuple[float, float]:
        """CPU (percent of one core) and resident memory (MiB) of ``p`` now (0 while it is not running)."""
        meter = self._meters.get(p.name)
        if meter is None or p.proc is None:
            return 0.0, 0.0
        return meter.cpu.value, meter.cpu.rss_mb

    def _process_status(self, p: Supervised) -> ProcessStatus:
        cpu, rss = self._usage(p)
        age = p.beat.age_s
        return ProcessStatus(
            name=p.name, kind=p.kind.name, state=p.state, reason=p.reason, pid=p.pid, restarts=p.restarts,
            last_error=p.last_error, heartbeat_age_s=round(age, 3) if age is not None else None,
            cpu_percent=round(cpu, 1), rss_mb=round(rss, 1),
            metrics={k: round(v, 3) for k, v in p.kind.metrics(self._sample(p)).items()},
            ended_at=p.ended_at,
        )

    def state_changes(self, status: NodeStatus) -> list[dict[str, Any]]:
        """``{"type": "status", ...}`` messages for the cameras whose state changed since the last call."""
        out: list[dict[str, Any]] = []
        for name, cs in status.cameras.items():
            if self._camera_states.get(name) != cs.state:
                self._camera_states[name] = cs.state
                out.append({"type": "status", "camera": name, "state": cs.state, "reason": cs.reason})
        for name in set(self._camera_states) - set(status.cameras):
            del self._camera_states[name]
            out.append({"type": "status", "camera": name, "state": "removed", "reason": ""})
        return out

    def write(self, status: NodeStatus, *, force: bool = True) -> None:
        """Write ``status`` to :attr:`status_path` atomically, owner-only; without ``force`` once a second."""
        now = time.monotonic()
        if not force and now - self._last_file < 1.0:
            return
        self._last_file = now
        with contextlib.suppress(OSError):
            tmp = self.status_path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(status.to_json(), f)
            os.replace(tmp, self.status_path)
