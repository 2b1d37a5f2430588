"""Fencing's parts without a fleet: the agent's lease rules, the lease file, a camera process's watch."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from camfleet.cluster.fence import Fence
from camfleet.runtime import lease as lease_module
from camfleet.runtime.lease import EXIT_FENCED, LeaseReader, NodeLease, watch_lease

pytestmark = pytest.mark.unit

S = 1_000_000_000  # nanoseconds per second


class Clock:
    def __init__(self) -> None:
        self.now = 100 * S

    def __call__(self) -> int:
        return self.now


def test_acknowledged_beats_hold_the_lease_and_a_late_one_cannot_renew_it() -> None:
    clock, written = Clock(), []
    fence = Fence(4.0, written.append, clock=clock)
    assert fence.lease_ns == 3 * S and not fence.held
    assert not fence.acked(clock.now)  # not held yet: the agent must rejoin first
    assert fence.grant(clock.now) and fence.held and written == [103 * S]
    clock.now += S
    assert fence.acked(clock.now - S // 2) and fence.deadline == 103 * S + S // 2
    assert not fence.check()
    clock.now = fence.deadline  # frozen past the deadline: the next acknowledgement is too late
    assert not fence.acked(clock.now - S // 10)
    assert not fence.held and written[-1] == 0 and fence.lapsed_at == clock.now
    assert fence.outage_s() == pytest.approx(3.0)  # since the last beat that renewed it was sent
    assert not fence.grant(clock.now - 4 * S)  # a beat sent too long ago earns nothing
    assert fence.grant(clock.now) and fence.lapsed_at is None
    fence.revoke()  # a clean stop
    assert not fence.held and written[-1] == 0 and not fence.acked(clock.now)


def test_the_watchdog_sees_the_lapse_once_and_the_margin_is_at_most_a_quarter_of_the_ttl() -> None:
    clock, written = Clock(), []
    fence = Fence(2.0, written.append, clock=clock)
    assert fence.lease_ns == round(1.5 * S)
    fence.grant(clock.now)
    clock.now += 2 * S
    assert fence.check() and not fence.check() and written[-1] == 0


def test_the_lease_file_is_owner_only_and_read_by_camera_processes(tmp_path: Path) -> None:
    path = tmp_path / "lease"
    path.symlink_to(tmp_path / "elsewhere")  # planted: replaced, never followed
    lease = NodeLease(path)
    try:
        assert not path.is_symlink() and not (tmp_path / "elsewhere").exists()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        reader = LeaseReader(path)
        assert reader.lapsed_s() == 0.0 and lease.closed() == "fenced: the node holds no fleet lease"
        now = lease_module.lease_clock_ns()
        lease.hold_until(now + 10 * S)
        assert reader.lapsed_s() is None and lease.closed() is None
        lease.hold_until(now - 2 * S)
        assert reader.lapsed_s(now) == pytest.approx(2.0)
        assert "lapsed 2.0 s ago" in (lease.closed(now) or "")
    finally:
        lease.close()
    assert not path.exists()


def test_a_camera_process_stops_when_the_lease_lapses_and_leaves_if_it_lingers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lease_module, "FENCE_EXIT_S", 0.05)
    lease = NodeLease(tmp_path / "lease")
    lease.hold_until(lease_module.lease_clock_ns() + 60 * S)
    stop, fenced, left = threading.Event(), threading.Event(), []
    thread = watch_lease(str(lease.path), stop, fenced, "test camera", leave=left.append)
    try:
        time.sleep(0.3)
        assert not stop.is_set()
        lease.revoke()
        thread.join(2)
        assert stop.is_set() and fenced.is_set() and left == [EXIT_FENCED]
        # a normal stop ends the watch without any of it
        stop2, fenced2 = threading.Event(), threading.Event()
        lease.hold_until(lease_module.lease_clock_ns() + 60 * S)
        thread2 = watch_lease(str(lease.path), stop2, fenced2, "test camera", leave=left.append)
        stop2.set()
        thread2.join(2)
        assert not thread2.is_alive() and not fenced2.is_set() and left == [EXIT_FENCED]
    finally:
        lease.close()
