"""Process supervision: start, health state machine, restart with back-off, stop with escalation.

One :class:`Supervisor` keeps every process of a node alive, whatever its
kind (camera processes and detectors alike). Each pass reads every
process's beat (:class:`~camfleet.runtime.heartbeat.Beat`) and moves it
through the states of :data:`~camfleet.runtime.control.HealthState`:

* ``starting`` until the first beat, killed when none comes within ``startup_grace``;
* ``healthy`` / ``degraded`` as the process says, ``starting`` for a few seconds after a start;
* ``unresponsive`` when its kind says it is hung (no beat, stuck): killed with SIGKILL;
* ``restarting`` after an exit, started again after the :class:`RestartPolicy`'s delay;
* ``failed`` after too many failures within the window, retried slowly.

Stopping asks first (SIGTERM sets the child's stop event), then insists (a
second SIGTERM leaves at once), then kills.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Protocol

from camfleet.config import RuntimeSettings

from . import heartbeat as hb
from .control import HealthState
from .health import RestartPolicy
from .kinds import ProcessKind

log = logging.getLogger("camfleet.runtime")

STARTING_GRACE_S = 5.0
"""A process that says "degraded" this soon after starting is still reported as starting."""


class BeatSource(Protocol):
    """Where one supervised process beats: read its last beat, clear it before a start, release it."""

    def read(self) -> hb.Beat:
        """The process's last beat (:data:`~camfleet.runtime.heartbeat.NEVER` before the first)."""
        ...

    def clear(self) -> None:
        """Forget the previous process's beats (called before each start)."""

    def release(self) -> None:
        """Free what the beats use (the process is removed for good)."""


def describe_exit(code: int | None) -> str:
    """A process exit code in words (negative codes are signals)."""
    if code is None:
        return "did not exit"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass(eq=False)
class Supervised:
    """One supervised process and what the supervisor knows about it.

    ``launch`` builds a new, not yet started process (called at each start);
    ``camera`` is None for processes shared by the node (detectors);
    ``stuck_s`` is how long one blocking call may take (kinds that report it);
    times are monotonic seconds.
    """

    name: str
    kind: ProcessKind
    camera: str | None
    launch: Callable[[], BaseProcess]
    beats: BeatSource
    policy: RestartPolicy
    stuck_s: float | None = None
    proc: BaseProcess | None = None
    state: HealthState = "starting"
    reason: str = ""
    last_error: str | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float | None = None
    kill_reason: str | None = None
    beat: hb.Beat = field(default=hb.NEVER)

    @property
    def pid(self) -> int | None:
        """The pid of the running process (None while it is not running)."""
        return self.proc.pid if self.proc is not None else None

    def log_extra(self) -> dict[str, str]:
        """The ``extra`` of log records about this process (routes them to the camera's log)."""
        return {"camera": self.camera} if self.camera is not None else {}


class Supervisor:
    """Keeps a set of :class:`Supervised` processes alive; thread-safe.

    ``settings`` (the configuration's ``runtime`` section) give the
    heartbeat timeout, the start-up grace and the stop timeout, in seconds.
    """

    def __init__(self, settings: RuntimeSettings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._procs: dict[str, Supervised] = {}

    def entries(self) -> list[Supervised]:
        """Every supervised process, in the order they were added."""
        with self._lock:
            return list(self._procs.values())

    def get(self, name: str) -> Supervised | None:
        """The process called ``name``, if supervised."""
        with self._lock:
            return self._procs.get(name)

    def add(self, entry: Supervised) -> None:
        """Supervise ``entry`` and start it now."""
        with self._lock:
            self._procs[entry.name] = entry
            self.spawn(entry)

    def spawn(self, p: Supervised) -> None:
        """Start ``p``'s process (again)."""
        p.beats.clear()
        p.proc = p.launch()
        p.proc.start()
        p.started_at = time.monotonic()
        p.next_start = None
        p.kill_reason = None
        p.beat = hb.NEVER
        p.state, p.reason = "starting", ""

    def update(self, settings: RuntimeSettings) -> None:
        """Use new runtime settings from the next pass and the next restart decision on."""
        with self._lock:
            self.settings = settings
            for p in self._procs.values():
                p.policy.update(settings)

    def check(self, now: float | None = None) -> None:
        """One pass: read every beat, judge every process, restart those due (``now``: monotonic s)."""
        with self._lock:
            now = time.monotonic() if now is None else now
            for p in list(self._procs.values()):
                self._check(p, now)

    def _check(self, p: Supervised, now: float) -> None:
        rt = self.settings
        if p.proc is None:
            if p.next_start is not None and now >= p.next_start:
                p.restarts += 1
                log.info("starting %s again (restart %d)", p.name, p.restarts, extra=p.log_extra())
                self.spawn(p)
            return
        if not p.proc.is_alive():
            self._exited(p, now)
            return
        p.beat = beat = p.beats.read()
        if beat.age_s is None:
            if now - p.started_at > rt.startup_grace:
                self._kill(p, f"no heartbeat within {rt.startup_grace:g} s of starting")
            else:
                p.state, p.reason = "starting", ""
            return
        hung = p.kind.kill_reason(beat, rt, p.stuck_s)
        if hung is not None:
            self._kill(p, hung)
        elif beat.state == hb.OK:
            p.state, p.reason = "healthy", ""
        elif now - p.started_at < STARTING_GRACE_S:
            p.state, p.reason = "starting", beat.reason
        else:
            p.state, p.reason = "degraded", beat.reason
        if hung is None:
            p.policy.running_since(p.started_at, now)

    def _exited(self, p: Supervised, now: float) -> None:
        assert p.proc is not None
        reason = p.kill_reason or describe_exit(p.proc.exitcode)
        p.proc.join(0)
        p.proc = None
        decision = p.policy.failure(now)
        p.last_error = reason
        p.next_start = now + decision.delay_s
        if decision.failed:
            p.state = "failed"
            p.reason = (f"{decision.failures_in_window} failures within {self.settings.failure_window:g} s, "
                        f"last: {reason}; next try in {decision.delay_s:g} s")
            log.error("%s failed: %s", p.name, p.reason, extra=p.log_extra())
        else:
            p.state = "restarting"
            p.reason = f"{reason}; restarting in {decision.delay_s:.1f} s"
            log.warning("%s %s", p.name, p.reason, extra=p.log_extra())

    def _kill(self, p: Supervised, reason: str) -> None:
        p.state, p.reason, p.kill_reason = "unresponsive", reason, reason
        log.warning("%s %s; killing it", p.name, reason, extra=p.log_extra())
        if p.proc is not None and p.proc.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(p.proc.pid, signal.SIGKILL)

    def remove(self, entries: Iterable[Supervised], timeout: float | None = None) -> None:
        """Stop ``entries`` (see :meth:`stop_processes`) and forget them for good."""
        entries = list(entries)
        with self._lock:
            for p in entries:
                self._procs.pop(p.name, None)
        self.stop_processes(entries, timeout)
        for p in entries:
            p.beats.release()

    def remove_all(self, timeout: float | None = None) -> None:
        """Stop and forget every process; those of a lower ``stop_rank`` first."""
        with self._lock:
            entries = list(self._procs.values())
        for rank in sorted({p.kind.stop_rank for p in entries}):
            self.remove([p for p in entries if p.kind.stop_rank == rank], timeout)

    def stop_processes(self, entries: Iterable[Supervised], timeout: float | None = None) -> None:
        """Stop processes: SIGTERM (their stop event), then SIGTERM's hard path, then SIGKILL.

        ``timeout`` (seconds, default the ``stop_timeout`` setting) is shared:
        70 % for the clean stop, 30 % for the hard path.
        """
        timeout = self.settings.stop_timeout if timeout is None else timeout
        procs = [p.proc for p in entries if p.proc is not None]
        live = [proc for proc in procs if proc.is_alive()]
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
        for proc in procs:
            proc.join(0.1)
