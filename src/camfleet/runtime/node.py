"""The node: a thin facade that makes this machine's processes match a configuration.

:class:`Node` implements :class:`~camfleet.runtime.control.NodeControl` over
parts with one job each:

* :class:`~camfleet.runtime.rundir.RunDir`: the claim on the data directory;
* :class:`~camfleet.runtime.supervisor.Supervisor`: every process's health
  state machine, restarts with back-off, stops with escalation;
* :class:`~camfleet.runtime.detectors.DetectorPool`: the shared detector processes;
* :class:`~camfleet.runtime.cameras.CameraProcesses`: per enabled camera an
  ingest, a pipeline and, when it records, a recorder process
  (:mod:`camfleet.runtime.kinds`);
* :class:`~camfleet.runtime.status.StatusBoard`: metrics, the status snapshot and ``status.json``;
* :class:`~camfleet.runtime.listeners.Listeners`: event and state-change fan-out;
* :class:`~camfleet.runtime.eventpath.EventPath`: events and segments to the store;
* :class:`~camfleet.runtime.housekeeping.Housekeeping`: storage check and retention;
* :class:`~camfleet.runtime.lease.NodeLease` (fleet nodes only): the lease its
  camera processes run under.

:meth:`Node.apply_config` computes the least change
(:mod:`camfleet.runtime.reconcile`) and touches only the cameras that changed;
zones, masks and element settings reach a running pipeline without a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from camfleet.config import Config, ConfigError
from camfleet.events import OutboxSink
from camfleet.pipeline.build import camera_pipeline
from camfleet.pipeline.validate import element_issues
from camfleet.store.errors import StoreError

from . import reconcile
from .cameras import CameraProcesses, forkserver_context
from .control import Listener, NodeStatus, ReloadResult
from .detect_use import detector_models
from .detectors import DetectorPool
from .eventpath import EventPath
from .housekeeping import Housekeeping
from .kinds import CameraKind, camera_kinds
from .lease import LEASE_FILE, NodeLease
from .listeners import Listeners
from .protocols import LogRouting
from .rundir import NodeAlreadyRunning, RunDir, reclaim_rings
from .status import StatusBoard
from .supervisor import Supervised, Supervisor

if TYPE_CHECKING:
    from camfleet.store import Store

__all__ = ["PASS_S", "Node", "NodeAlreadyRunning"]

log = logging.getLogger("camfleet.runtime")

PASS_S = 0.25
"""Seconds between supervisor passes."""


PRIVATE_UMASK = 0o077
"""Permission bits the node never grants: what it creates is readable by its owner only."""


def restrict_umask() -> None:
    """Add :data:`PRIVATE_UMASK` to the process's umask (files 0600, directories 0700 at most)."""
    os.umask(os.umask(PRIVATE_UMASK) | PRIVATE_UMASK)


class Node:
    """Runs a configuration on this machine; implements :class:`~camfleet.runtime.control.NodeControl`.

    ``loader`` re-reads the configuration for :meth:`reload` (for example the
    file ``camfleet run`` was given); ``store`` receives events and recording
    segments through a single writer; without one, events go to
    ``<data_dir>/events.jsonl``. ``log_router`` collects the children's logs.
    ``load_problems`` says what the last load could not read (e.g. cameras
    applied through the API whose key is lost): shown as errors of the start
    and of each reload, which still run what could be read.
    ``fencing`` (a fleet agent's node): camera processes run only while
    :attr:`lease` holds (:mod:`camfleet.runtime.lease`); from the start until
    the agent first grants it, none runs.
    """

    def __init__(self, config: Config, *, loader: Callable[[], Config] | None = None,
                 store: Store | None = None, log_router: LogRouting | None = None,
                 node_key: str = "local", load_problems: Callable[[], list[str]] | None = None,
                 fencing: bool = False) -> None:
        self.config = config
        self._fencing = fencing
        self._lease: NodeLease | None = None
        self.node_key = node_key
        self._loader = loader
        self._load_problems = load_problems
        self._log_router = log_router
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_reload = ReloadResult()
        self._rundir = RunDir(config.data_path)
        self._supervisor = Supervisor(config.runtime, gate=self._lease_gate if fencing else None)
        # detectors fork from the camera processes' forkserver too (started before the first sync)
        self._detectors = DetectorPool(self._supervisor, log_router=log_router, ctx=forkserver_context())
        lease_path = str(self._rundir.path / LEASE_FILE) if fencing else None
        self._cameras = CameraProcesses(self._supervisor, self._detectors, node_key=node_key,
                                        log_router=log_router, lease=lease_path)
        self._listeners = Listeners()
        self._events = EventPath(config, store, self._listeners.notify)
        self._board = StatusBoard(node_key, self._rundir.status_path)
        self._housekeeping = (Housekeeping(store, lambda: self.config, self._stop)
                              if store is not None else None)

    @property
    def run_dir(self) -> Path:
        """``<data_dir>/run``: the pid file and the status file."""
        return self._rundir.path

    @property
    def lease(self) -> NodeLease:
        """The fleet lease camera processes run under (a node started with ``fencing``)."""
        if self._lease is None:
            raise RuntimeError("this node has no fleet lease (not started, or started without fencing)")
        return self._lease

    def _lease_gate(self) -> str | None:
        return self._lease.closed() if self._lease is not None else "fenced: the node holds no fleet lease"

    @property
    def status_path(self) -> Path:
        """The status snapshot ``camfleet status`` reads, rewritten every second."""
        return self._rundir.status_path

    # ------------------------------------------------------------------ lifetime

    def start(self) -> None:
        """Claim the data directory, start detectors and every enabled camera, then supervise in a thread."""
        cfg = self.config
        restrict_umask()  # before anything is created: footage, database, snapshots are the owner's alone
        self._rundir.claim()
        if self._fencing:  # after the claim: never over the lease file of another node that runs
            self._lease = NodeLease(self._rundir.path / LEASE_FILE)
        self._board.started_at = time.time()
        self._cameras.open()
        self._events.start()
        try:
            self._detectors.sync(cfg)
            for name in cfg.cameras:
                if self._supervisor.stopping:  # Ctrl-C during the start: start nothing more
                    break
                for kind in camera_kinds(cfg, name):
                    self._cameras.add(cfg, name, kind, self._events.producer())
        except BaseException:
            self.stop()
            raise
        loops = [(self._supervise, "supervisor")]
        if self._housekeeping is not None:
            loops.append((self._housekeeping.run, "retention"))
        for target, tname in loops:
            t = threading.Thread(target=target, name=f"camfleet-{tname}", daemon=True)
            t.start()
            self._threads.append(t)
        self._report_load_problems(self._last_reload)

    def _supervise(self) -> None:
        """Every :data:`PASS_S` s: judge the processes, refresh the status, tell listeners of changes."""
        while not self._stop.wait(PASS_S):
            try:
                with self._lock:
                    self._supervisor.check()
                    status = self._sample()
                changes = self._board.state_changes(status)
                for message in changes:
                    self._listeners.notify(message)
                self._board.write(status, force=bool(changes))
            except Exception:  # the supervisor must outlive any one bad pass
                log.exception("supervisor pass failed")

    def _sample(self) -> NodeStatus:
        entries = self._supervisor.entries()
        self._board.measure(entries, time.monotonic())
        status = self._board.build(self.config, entries, self._last_reload)
        status.outbox = self._events.stats()
        status.sinks = self._events.sink_stats()
        return status

    def request_stop(self) -> None:
        """Say that a stop is coming (safe from a signal handler): exits from now on are not restarted.

        The caller then calls :meth:`stop`; a start under way starts no more cameras.
        """
        self._supervisor.begin_stop()

    def stop(self, timeout: float | None = None) -> None:
        """Stop every process (stop event, then terminate, then kill) and release what the node holds."""
        self._supervisor.begin_stop()
        self._stop.set()
        for t in self._threads:
            t.join(2.0)
        with self._lock:
            self._supervisor.remove_all(timeout)  # cameras first: their pipelines still talk to detectors
            self._detectors.clear()
            self._cameras.close()
            if self._fencing:  # a camera process that left at once when fenced left its rings behind
                reclaim_rings()
        self._events.stop()
        lease, self._lease = self._lease, None  # a late supervisor pass sees "no lease", not a closed map
        if lease is not None:
            lease.close()
        self._rundir.release()

    # ------------------------------------------------------------------ NodeControl

    def status(self) -> NodeStatus:
        """The latest supervisor snapshot (refreshed every :data:`PASS_S` seconds)."""
        return self._board.current

    def current_config(self) -> Config:
        """The configuration the node runs now."""
        return self.config

    def processes(self) -> dict[str, int | None]:
        """Name (``cam1/pipeline``, ``detector/cpu``) -> pid of every process the node runs."""
        return {p.name: p.pid for p in self._supervisor.entries()}

    def flush_events(self, timeout: float = 10.0) -> bool:
        """Wait until every event, span and segment journalled so far is delivered to the store.

        Returns False when ``timeout`` (seconds) passes first (the store may be down).
        """
        return self._events.flush(timeout)

    def add_sink(self, sink: OutboxSink) -> None:
        """Deliver the event outbox to ``sink`` as well (at least once, own cursor); before :meth:`start`."""
        self._events.add_sink(sink)

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with each event update and camera state change; returns the unsubscribe."""
        return self._listeners.add(listener)

    def reload(self) -> ReloadResult:
        """Read the configuration again (the ``loader``) and apply it; a bad one changes nothing."""
        if self._loader is None:
            return self._reject(["this node runs a configuration that was not read from a file"])
        try:
            new = self._loader()
        except ConfigError as exc:
            return self._reject([str(issue) for issue in exc.issues])
        except (OSError, ValueError, StoreError) as exc:  # a store error never stops a running camera
            return self._reject([str(exc)])
        result: ReloadResult | None = None
        with self._lock:
            last = self._last_reload
            if new == self.config and last.ok and last.generation > 0:
                # the file watch applied this content already (a save, then `camfleet reload`):
                # answer with what that change did instead of an empty change
                note = f"the file was already in force (generation {last.generation})"
                result = dataclasses.replace(
                    last, at=time.time(), errors=[*(e for e in last.errors if e != note), note])
                self._last_reload = result
        if result is not None:
            self._refresh_status()
            return self._report_load_problems(result)
        return self._report_load_problems(self.apply_config(new))

    def _report_load_problems(self, result: ReloadResult) -> ReloadResult:
        """``result`` with what the loader could not read added to its errors (logged by the loader)."""
        problems = self._load_problems() if self._load_problems is not None else []
        if problems:
            with self._lock:
                result.errors.extend(p for p in problems if p not in result.errors)
                result.at = result.at or time.time()  # at start too, so that `camfleet status` shows them
        return result

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
                restarted_detectors = sorted(self._detectors.sync(config))
            except Exception as exc:
                self.config = old
                self._detectors.sync(old)
                return self._reject([f"detectors: {exc}"])
            result = ReloadResult(generation=self._last_reload.generation + 1, ok=True, at=time.time(),
                                  added=plan.added, removed=plan.removed)
            to_stop: list[Supervised] = []
            to_start: list[tuple[str, CameraKind]] = []
            for name, cp in plan.cameras.items():
                to_stop += [p for kind in cp.stop + cp.restart if (p := self._cameras.find(name, kind))]
                to_start += [(name, kind) for kind in cp.start + cp.restart]
                if cp.restart and name not in plan.added:
                    result.restarted.append(f"{name}/" + ",".join(kind.name for kind in cp.restart))
                if cp.update:
                    result.updated.append(name)
            for name in plan.removed:
                self._detectors.forget(name)
            self._cameras.remove(to_stop)
            if self._fencing and plan.removed:  # fenced away at once, a removed camera left its rings
                reclaim_rings()
            for name, kind in to_start:
                self._cameras.add(config, name, kind, self._events.producer())
            self._supervisor.update(config.runtime)
            self._cameras.retarget(config, result.updated)
            result.restarted += [f"detector/{d}" for d in restarted_detectors]
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

    # ------------------------------------------------------------------ helpers

    def _validate(self, new: Config) -> list[str]:
        # element settings first: their issues name the key ("pipelines.default[2].track.x"), which
        # building a pipeline would only report as pydantic's raw text
        errors = [str(issue) for issue in element_issues(new)]
        if errors:
            return errors
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
            status = self._board.build(self.config, self._supervisor.entries(), self._last_reload)
        self._board.write(status)
