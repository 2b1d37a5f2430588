"""Process supervision: start, health state machine, restart with back-off, stop with escalation.

One :class:`Supervisor` keeps every process of a node alive, whatever its
kind (camera processes and detectors alike). Each pass reads every
process's beat (:class:`~camfleet.runtime.heartbeat.Beat`) and moves it
through the states of :data:`~camfleet.runtime.control.HealthState`:

* ``starting`` until the first beat, killed when none comes within ``startup_grace``;
* ``healthy`` / ``degraded`` as the process says, ``starting`` for a few seconds after a start;
* ``unresponsive`` when its kind says it is hung (no beat, stuck): killed with SIGKILL;
* ``restarting`` after an exit, started again after the :class:`RestartPolicy`'s delay;
* ``failed`` after too many failures within the window, retried slowly;
* ``ended`` after an exit with :data:`~camfleet.runtime.health.EXIT_ENDED` (its file
  ended): never restarted, and the camera's other processes are asked to stop
  and end too (they have nothing more to read);
* ``stopped`` while the ``gate`` is closed (a fleet node whose lease lapsed,
  :mod:`camfleet.runtime.lease`): camera processes stop by themselves, one
  still running :data:`FENCE_KILL_S` later is killed, and none starts until
  the gate opens again (no failure is counted).

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
from camfleet.procutil import sigint_blocked

from . import heartbeat as hb
from .control import HealthState
from .health import EXIT_ENDED, RestartPolicy
from .kinds import ProcessKind
from .lease import EXIT_FENCED

log = logging.getLogger("camfleet.runtime")

STARTING_GRACE_S = 5.0
"""A process that says "degraded" this soon after starting is still reported as starting."""

FENCE_KILL_S = 2.0
"""Seconds after the supervisor saw its gate close that a camera process still running is killed."""

Gate = Callable[[], str | None]
"""Why camera processes may not run now (None: they may), asked once per supervisor pass."""


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
    times are monotonic seconds, except ``ended_at`` (when it ended for good,
    seconds since the epoch); ``ending`` is set while it is asked to stop
    because its camera ended; ``held`` while the supervisor's gate keeps it stopped.
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
    ended_at: float | None = None
    ending: bool = False
    held: bool = False

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
    ``gate`` (a fleet node's lease) holds every camera process while it says why.
    """

    def __init__(self, settings: RuntimeSettings, gate: Gate | None = None) -> None:
        self.settings = settings
        self._gate = gate
        self._closed_since: float | None = None  # monotonic s the gate was first seen closed
        self._lock = threading.RLock()
        self._procs: dict[str, Supervised] = {}
        self._stopping = threading.Event()

    def begin_stop(self) -> None:
        """The node is stopping: from now on an exit is expected, never restarted, never a warning.

        Safe from a signal handler (it only sets an event). Whichever process
        sees a Ctrl-C first, the processes that end from now on are ``stopped``.
        """
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`begin_stop` was called."""
        return self._stopping.is_set()

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
            closed = self._gate() if self._gate is not None and entry.camera is not None else None
            if closed is None:
                self.spawn(entry)
            else:  # started by the first pass after the gate opens
                entry.state, entry.reason, entry.next_start = "stopped", closed, time.monotonic()
                entry.held = True

    def spawn(self, p: Supervised) -> None:
        """Start ``p``'s process (again)."""
        p.beats.clear()
        p.proc = p.launch()
        # Ctrl-C is the node's to handle: the child starts with SIGINT blocked, or ignored when it is
        # exec'd (spawn starts return at once; `_start_method` is how multiprocessing names it)
        with sigint_blocked(ignore=getattr(p.proc, "_start_method", None) == "spawn"):
            p.proc.start()
        p.started_at = time.monotonic()
        p.next_start = None
        p.kill_reason = None
        p.ended_at, p.ending, p.held = None, False, False
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
            closed = self._gate() if self._gate is not None else None
            if closed is None:
                self._closed_since = None
            elif self._closed_since is None:
                self._closed_since = now
                log.warning("camera processes held: %s", closed)
            for p in list(self._procs.values()):
                if closed is not None and p.camera is not None and not self.stopping:
                    self._hold(p, closed, now)
                else:
                    self._check(p, now)

    def _hold(self, p: Supervised, why: str, now: float) -> None:
        """The gate is closed: ``p`` stops by itself (killed if it lingers) and waits for the gate."""
        if p.state == "ended" and p.proc is None:
            return
        p.held = True
        if p.proc is not None and p.proc.is_alive():
            since = self._closed_since if self._closed_since is not None else now
            if now - since > FENCE_KILL_S and p.kill_reason is None and p.proc.pid is not None:
                p.kill_reason = f"{why}; still running {FENCE_KILL_S:g} s later"
                log.warning("%s %s; killing it", p.name, p.kill_reason, extra=p.log_extra())
                with contextlib.suppress(OSError):
                    os.kill(p.proc.pid, signal.SIGKILL)
            p.state, p.reason = "stopped", f"{why}; stopping"
            return
        if p.proc is not None:
            log.info("%s %s: %s", p.name, describe_exit(p.proc.exitcode), why, extra=p.log_extra())
            p.proc.join(0)
            p.proc = None
        p.state, p.reason, p.next_start = "stopped", why, now  # starts again once the gate opens

    def _check(self, p: Supervised, now: float) -> None:
        rt = self.settings
        if self.stopping:
            self._check_stopping(p)
            return
        if p.state == "ended" and p.proc is None:
            return  # done for good: only a configuration change starts it again (a new entry)
        if p.proc is None:
            if p.next_start is not None and now >= p.next_start:
                if p.started_at:
                    p.restarts += 1
                    log.info("starting %s again (restart %d)", p.name, p.restarts, extra=p.log_extra())
                else:  # added while the gate was closed: its first start
                    log.info("starting %s", p.name, extra=p.log_extra())
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

    def _check_stopping(self, p: Supervised) -> None:
        """While the node stops: an exit is the stop itself, and nothing starts again."""
        p.next_start = None
        if p.proc is not None and not p.proc.is_alive():
            log.debug("%s %s while the node stops", p.name, describe_exit(p.proc.exitcode),
                      extra=p.log_extra())
            p.proc.join(0)
            p.proc = None
        if p.proc is None:
            p.state, p.reason = "stopped", "the node is stopping"

    def _exited(self, p: Supervised, now: float) -> None:
        assert p.proc is not None
        code = p.proc.exitcode
        reason = p.kill_reason or describe_exit(code)
        p.proc.join(0)
        p.proc = None
        if p.ending or (p.kill_reason is None and code == EXIT_ENDED):
            self._ended(p)
            return
        if self._gate is not None and p.kill_reason is None and code == EXIT_FENCED:  # lapsed, came back
            p.state, p.next_start = "restarting", now
            p.reason = "stopped by a lapsed fleet lease; starting again"
            log.info("%s %s", p.name, p.reason, extra=p.log_extra())
            return
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

    def _ended(self, p: Supervised) -> None:
        """``p`` finished for good: no restart; a source that ended ends its camera's other processes."""
        p.state, p.next_start, p.ended_at = "ended", None, time.time()
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.ended_at))
        if p.ending:
            p.reason = f"its camera's source ended; stopped at {at}"
            return
        p.reason = f"the file ended at {at}; not restarted"
        log.info("%s: %s", p.name, p.reason, extra=p.log_extra())
        for other in self._procs.values():
            if other is p or other.camera is None or other.camera != p.camera or other.state == "ended":
                continue
            other.ending = True  # its exit is the end, not a failure
            if other.proc is None:  # waiting for a restart: there is nothing left to restart for
                self._ended(other)
                continue
            with contextlib.suppress(OSError):
                other.proc.terminate()  # its stop event: a clean stop (segment closed, events ended)

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
        """Stop and forget every process; those of a lower ``stop_rank`` first (the node's stop)."""
        self.begin_stop()
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
