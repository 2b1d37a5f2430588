"""The one supervisor: health states, restarts with back-off, failed, stop with escalation."""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from multiprocessing.process import BaseProcess

import pytest

from camfleet.config import RuntimeSettings
from camfleet.runtime import heartbeat as hb
from camfleet.runtime.health import RestartPolicy
from camfleet.runtime.kinds import DETECTOR, INGEST, PIPELINE, ProcessKind
from camfleet.runtime.supervisor import Supervised, Supervisor, describe_exit
from tests.support.supervisor_targets import exit_soon, sleep_forever

pytestmark = pytest.mark.process

RT = RuntimeSettings(heartbeat_timeout=1, startup_grace=0.5, backoff_initial=0.1, backoff_max=0.2,
                     max_failures=3, failure_window=60, failed_retry=60, stop_timeout=1)


class FakeBeats:
    """A beat source the test sets by hand; records when it is released."""

    def __init__(self, released: list[str], name: str) -> None:
        self.beat = hb.NEVER
        self.released = released
        self.name = name

    def read(self) -> hb.Beat:
        return self.beat

    def clear(self) -> None:
        self.beat = hb.NEVER

    def release(self) -> None:
        self.released.append(self.name)


def entry(name: str, target: object, args: tuple[object, ...], *, kind: ProcessKind = PIPELINE,
          released: list[str] | None = None) -> Supervised:
    """A supervised fork of ``target(*args)``; named ``camera/kind`` or ``detector/instance``."""
    ctx = mp.get_context("forkserver")  # the house rule: no bare fork in a process with threads

    def launch() -> BaseProcess:
        return ctx.Process(target=target, args=args, daemon=True)  # type: ignore[arg-type]

    camera = None if name.startswith("detector/") else name.partition("/")[0]
    return Supervised(name=name, kind=kind, camera=camera, launch=launch,
                      beats=FakeBeats(released if released is not None else [], name),
                      policy=RestartPolicy(RT))


def run_until(sup: Supervisor, done: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, [(p.name, p.state, p.reason) for p in sup.entries()]
        sup.check()
        time.sleep(0.02)  # the pass period: the processes change on their own


def test_an_exited_process_is_restarted_with_back_off_then_marked_failed() -> None:
    sup = Supervisor(RT)
    p = entry("cam/pipeline", exit_soon, (3,))
    sup.add(p)
    try:
        run_until(sup, lambda: p.state == "restarting")
        assert p.reason == "exited with code 3; restarting in 0.1 s" and p.last_error == "exited with code 3"
        run_until(sup, lambda: p.restarts == 1)
        run_until(sup, lambda: p.state == "failed")  # the third failure within the window
        assert p.restarts == 2 and "3 failures within 60 s" in p.reason and "next try in 60 s" in p.reason
    finally:
        sup.remove_all()


def test_no_first_beat_within_the_grace_kills_a_process_and_beats_make_it_healthy() -> None:
    sup = Supervisor(RT)
    p = entry("cam/ingest", sleep_forever, (False,), kind=INGEST)
    sup.add(p)
    try:
        first = p.pid
        run_until(sup, lambda: p.state == "restarting")
        assert p.last_error == "no heartbeat within 0.5 s of starting"
        run_until(sup, lambda: p.pid not in (None, first))
        assert isinstance(p.beats, FakeBeats)
        p.beats.beat = hb.Beat(pid=p.pid or 0, age_s=0.1, state=hb.OK, reason="", counters=())
        run_until(sup, lambda: p.state == "healthy")
        p.beats.beat = hb.Beat(pid=p.pid or 0, age_s=2.0, state=hb.OK, reason="", counters=())
        run_until(sup, lambda: p.state in ("unresponsive", "restarting"))
        run_until(sup, lambda: p.last_error == "unresponsive: no heartbeat for 2.0 s")
    finally:
        sup.remove_all()


def test_a_stuck_detector_is_killed_by_the_same_machine() -> None:
    sup = Supervisor(RT)
    p = entry("detector/cpu", sleep_forever, (False,), kind=DETECTOR)
    p.stuck_s = 1.0
    sup.add(p)
    try:
        assert isinstance(p.beats, FakeBeats)
        p.beats.beat = hb.Beat(pid=p.pid or 0, age_s=0.1, state=hb.OK, reason="", counters=(), busy_s=1.5)
        run_until(sup, lambda: p.last_error == "stuck in one inference for more than 1 s")
        assert p.state == "restarting"
    finally:
        sup.remove_all()


def test_stop_escalates_to_kill_and_serving_processes_stop_last() -> None:
    sup = Supervisor(RT)
    released: list[str] = []
    detector = entry("detector/cpu", sleep_forever, (False,), kind=DETECTOR, released=released)
    stubborn = entry("cam/pipeline", sleep_forever, (True,), released=released)
    sup.add(detector)
    sup.add(stubborn)
    time.sleep(1.0)  # let the child install its SIGTERM handler; it tells nothing when it has
    procs = [p.proc for p in (detector, stubborn)]
    t0 = time.monotonic()
    sup.remove_all(timeout=1.0)
    assert time.monotonic() - t0 < 4.0
    assert released == ["cam/pipeline", "detector/cpu"]
    assert all(proc is not None and not proc.is_alive() for proc in procs)
    assert stubborn.proc is not None and stubborn.proc.exitcode == -signal.SIGKILL
    assert sup.entries() == []


def test_describe_exit() -> None:
    assert describe_exit(None) == "did not exit"
    assert describe_exit(0) == "exited with code 0"
    assert describe_exit(-9) == "killed by SIGKILL"


def test_a_closed_gate_holds_camera_processes_kills_lingerers_and_counts_no_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from camfleet.runtime import supervisor as module

    monkeypatch.setattr(module, "FENCE_KILL_S", 0.2)
    gate: list[str | None] = ["fenced: no lease yet"]
    sup = Supervisor(RT, gate=lambda: gate[0])
    cam = entry("cam/ingest", sleep_forever, (True,), kind=INGEST)
    det = entry("detector/cpu-0", sleep_forever, (False,), kind=DETECTOR)
    sup.add(cam)
    sup.add(det)
    try:
        assert cam.proc is None and cam.state == "stopped" and cam.reason == "fenced: no lease yet"
        assert det.proc is not None  # only camera processes are fenced
        sup.check()
        assert cam.proc is None
        gate[0] = None
        run_until(sup, lambda: cam.proc is not None)
        assert cam.restarts == 0  # its first start
        pid = cam.pid
        gate[0] = "fenced: lapsed"  # a camera process that does not stop by itself is killed
        run_until(sup, lambda: cam.proc is None)
        assert cam.state == "stopped" and cam.reason == "fenced: lapsed" and cam.last_error is None
        assert det.proc is not None and det.proc.is_alive()
        gate[0] = None
        run_until(sup, lambda: cam.proc is not None and cam.pid != pid)
        assert cam.restarts == 1 and cam.state == "starting"
    finally:
        sup.remove_all()
