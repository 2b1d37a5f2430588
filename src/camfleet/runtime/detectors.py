"""The detector pool: the detector processes a configuration needs, supervised like every other process.

:class:`DetectorPool` starts, for each detector the enabled cameras' pipelines
name, ``processes`` detector processes serving its model, restarts them
through the node's one :class:`~camfleet.runtime.supervisor.Supervisor` (same
health states and back-off as camera processes; a detector stuck in one
inference counts as hung) and assigns each camera a process per detector
(sticky, least-loaded on first use). :class:`DetectorManager` runs one
detector under a supervisor of its own, for tools and tests without a node.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess

from camfleet.config import Config, RuntimeSettings
from camfleet.detect.protocol import socket_path
from camfleet.detect.service import (
    DetectorFailed,
    DetectorSettings,
    detector_main,
    heartbeat_path,
    read_heartbeat,
)
from camfleet.detect.specs import model_spec
from camfleet.detect.workers import default_workers

from . import heartbeat as hb
from .children import camfleet_env
from .detect_use import detect_uses, detector_instances, detector_models
from .health import RestartPolicy
from .kinds import DETECTOR
from .malloc import default_arenas, limit_arenas
from .protocols import LogRouting
from .supervisor import Supervised, Supervisor

log = logging.getLogger("camfleet.runtime")

READY_TIMEOUT_S = 30.0
"""Seconds a detector has to load its model and accept connections when the pool starts it."""

Assignment = dict[str, tuple[str, tuple[int, int]]]
"""What a pipeline is given: configured detector name -> (detector process name, model input size (w, h))."""


class DetectorBeats:
    """A detector's heartbeat file (:func:`camfleet.detect.service.read_heartbeat`) as a beat source."""

    def __init__(self, instance: str) -> None:
        self.instance = instance

    def read(self) -> hb.Beat:
        """The detector's last beat in the common shape, counters named by :class:`~.kinds.DetectorKind`."""
        beat = read_heartbeat(self.instance)
        if beat is None:
            return hb.NEVER
        now = time.monotonic_ns()
        counters = [0.0] * 4
        counters[DETECTOR.BATCHES] = beat.batches
        counters[DETECTOR.IMAGES] = beat.images
        counters[DETECTOR.INFER_MS] = beat.infer_ns / 1e6
        counters[DETECTOR.QUEUED] = beat.queued
        return hb.Beat(pid=beat.pid, age_s=(now - beat.beat_ns) / 1e9, state=hb.OK, reason="",
                       counters=tuple(counters),
                       busy_s=(now - beat.busy_since_ns) / 1e9 if beat.busy_since_ns else None)

    def clear(self) -> None:
        """Remove the previous process's heartbeat file."""
        with contextlib.suppress(FileNotFoundError):
            heartbeat_path(self.instance).unlink()

    def release(self) -> None:
        """Remove the heartbeat file and the socket (the detector is gone for good)."""
        for path in (heartbeat_path(self.instance), socket_path(self.instance)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def run_detector(settings: DetectorSettings, parent_pid: int, env: dict[str, str]) -> None:
    """A detector process's entry point: the node's ``CAMFLEET_*`` environment ``env``, then serve.

    A process forked from the forkserver has the environment the forkserver started with, not
    the node's now (the shared-memory directory of a test, say).
    """
    for key in [k for k in os.environ if k.startswith("CAMFLEET_")]:
        del os.environ[key]
    os.environ.update(env)
    # the forkserver caps malloc arenas for camera processes; inference workers allocate side by side
    limit_arenas(default_arenas())
    detector_main(settings, parent_pid)


def detector_entry(settings: DetectorSettings, ctx: SpawnContext | ForkServerContext,
                   runtime: RuntimeSettings) -> Supervised:
    """A supervised detector process serving ``settings`` (started by :meth:`Supervisor.add`).

    ``ctx``: where it starts from: the node's forkserver (the modules it preloaded are shared,
    the node's ``__main__`` is not imported again) or a fresh interpreter.
    """
    parent = os.getpid()

    def launch() -> BaseProcess:
        return ctx.Process(target=run_detector, args=(settings, parent, camfleet_env()),
                           name=f"camfleet-detector-{settings.name}")

    return Supervised(name=f"detector/{settings.name}", kind=DETECTOR, camera=None, launch=launch,
                      beats=DetectorBeats(settings.name), policy=RestartPolicy(runtime),
                      stuck_s=settings.stuck_s)


def wait_ready(entry: Supervised, timeout: float = READY_TIMEOUT_S) -> None:
    """Wait until the detector of ``entry`` beats and listens; :class:`DetectorFailed` if it cannot."""
    assert isinstance(entry.beats, DetectorBeats)
    instance = entry.beats.instance
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        proc = entry.proc
        if proc is not None and entry.beats.read().pid == proc.pid and socket_path(instance).exists():
            return
        if proc is not None and not proc.is_alive():
            raise DetectorFailed(f"detector {instance!r} exited during start-up (exit code {proc.exitcode}); "
                                 "see its log")
        time.sleep(0.05)  # the child writes its beat; there is nothing to wait on
    raise DetectorFailed(f"detector {instance!r} did not start within {timeout:g} s")


class DetectorPool:
    """The detector processes of a configuration, supervised by ``supervisor``.

    Not thread-safe: the node calls it under its lock.
    """

    def __init__(self, supervisor: Supervisor, *, log_router: LogRouting | None = None,
                 ctx: SpawnContext | ForkServerContext | None = None) -> None:
        self._supervisor = supervisor
        self._log_router = log_router
        # the node passes its camera processes' forkserver (started before the first sync)
        self._ctx: SpawnContext | ForkServerContext = ctx if ctx is not None else DETECTOR.context()
        self._keys: dict[str, object] = {}  # detector -> the signature it runs with
        self._instances: dict[str, list[Supervised]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._assign: dict[str, dict[str, str]] = {}  # camera -> detector -> process name

    def sync(self, config: Config) -> list[str]:
        """Start, stop or restart detector processes to match ``config``; returns the detectors (re)started.

        Blocks until the started ones serve; raises :class:`DetectorFailed` when one cannot start.
        """
        wanted = {detector: DETECTOR.signature(config, detector, model)
                  for detector, model in detector_models(config).items()}
        for detector in list(self._instances):
            if self._keys.get(detector) != wanted.get(detector):
                self._supervisor.remove(self._instances.pop(detector), timeout=2.0)
                del self._keys[detector]
                for assigned in self._assign.values():
                    assigned.pop(detector, None)
        changed, started = [], []
        for detector, model in detector_models(config).items():
            if detector in self._instances:
                continue
            d = config.detectors[detector]
            spec = model_spec(config, model)
            assert spec.input_size is not None
            self._sizes[detector] = spec.input_size
            self._keys[detector] = wanted[detector]
            entries = self._instances[detector] = []
            for instance in detector_instances(detector, d.processes):
                settings = DetectorSettings(
                    name=instance, model=spec, threads=d.threads, max_batch=d.max_batch,
                    workers=d.workers if d.workers is not None else default_workers(d.processes),
                    max_running=d.max_running if d.max_running is not None else default_workers(d.processes),
                    max_wait_ms=d.max_wait_ms, log_init=self._log_init(config, instance),
                )
                entry = detector_entry(settings, self._ctx, config.runtime)
                self._supervisor.add(entry)
                entries.append(entry)
            started += entries
            changed.append(detector)
        for entry in started:
            wait_ready(entry)
        return changed

    def _log_init(self, config: Config, instance: str) -> functools.partial[None] | None:
        if self._log_router is None:
            return None
        from .logfiles import child_logging  # noqa: PLC0415 - only with a log router

        return functools.partial(child_logging, self._log_router.address, None, f"detector-{instance}",
                                 config.logging.level)

    def assign(self, config: Config, camera: str) -> Assignment:
        """The detector processes serving ``camera``: sticky, least-loaded on first use."""
        assigned = self._assign.setdefault(camera, {})
        used = {use.detector for use in detect_uses(config, camera)}
        for detector in used:
            if detector in assigned:
                continue
            load = {p.name.partition("/")[2]: 0 for p in self._instances[detector]}
            for other in self._assign.values():
                if other.get(detector) in load:
                    load[other[detector]] += 1
            assigned[detector] = min(load, key=lambda i: (load[i], i))
        return {d: (assigned[d], self._sizes[d]) for d in used}

    def forget(self, camera: str) -> None:
        """Drop ``camera``'s assignments (the camera was removed)."""
        self._assign.pop(camera, None)

    def clear(self) -> None:
        """Forget every detector (after the supervisor stopped them all)."""
        self._keys.clear()
        self._instances.clear()
        self._assign.clear()


class DetectorManager:
    """Runs one detector process and keeps it alive, without a node (tools, benchmarks, tests).

    The same :class:`~camfleet.runtime.supervisor.Supervisor` as the node's
    restarts the process when it exits, stops beating or is stuck in one
    inference longer than ``settings.stuck_s``, with the back-off of
    ``runtime`` (default settings when None); it checks every ``check_s`` seconds.
    """

    def __init__(self, settings: DetectorSettings, *, check_s: float = 0.2,
                 runtime: RuntimeSettings | None = None) -> None:
        self.settings = settings
        self._check_s = check_s
        self._supervisor = Supervisor(runtime or RuntimeSettings())
        ctx = DETECTOR.context()
        self._entry = detector_entry(settings, ctx, self._supervisor.settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"detector-{settings.name}", daemon=True)

    @property
    def pid(self) -> int | None:
        """The detector process's pid (None while not running)."""
        return self._entry.pid

    @property
    def restarts(self) -> int:
        """How many times the detector was started again."""
        return self._entry.restarts

    @property
    def last_reason(self) -> str:
        """Why the detector last stopped, or is being killed now ("" if neither)."""
        return self._entry.kill_reason or self._entry.last_error or ""

    def start(self, ready_timeout: float = READY_TIMEOUT_S) -> None:
        """Start the process, wait until it accepts connections, then supervise it."""
        self._supervisor.add(self._entry)
        try:
            wait_ready(self._entry, ready_timeout)
        except DetectorFailed:
            self._supervisor.remove_all(2.0)
            raise
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(self._check_s):
            try:
                self._supervisor.check()
            except Exception:  # the watchdog must outlive one bad pass
                log.exception("detector %s: supervision pass failed", self.settings.name)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop supervising, then stop the process (SIGTERM, then kill) and remove its files."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._supervisor.remove_all(timeout)
