"""StatusCache: one computation at a time, stale snapshots served meanwhile, invalidate waits."""

from __future__ import annotations

import threading
import time

import pytest

from camfleet.api.status_cache import StatusCache
from camfleet.runtime.control import NodeStatus

pytestmark = pytest.mark.unit


class Source:
    """A status source whose computations can be held open."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def status(self) -> NodeStatus:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(10)
        return NodeStatus(node=f"n{self.calls}", pid=1, started_at=0.0, at=time.time())


def test_a_stale_snapshot_is_served_while_another_reader_computes() -> None:
    src = Source()
    cache = StatusCache(src, ttl=0.01)
    assert cache.get().node == "n1"
    time.sleep(0.02)  # past the ttl: the snapshot is stale by age
    src.gate.clear()
    src.entered.clear()
    slow = threading.Thread(target=cache.get)
    slow.start()
    assert src.entered.wait(5)  # the slow reader is computing n2
    t0 = time.monotonic()
    assert cache.get().node == "n1"  # served at once, not queued behind it
    assert time.monotonic() - t0 < 1.0
    src.gate.set()
    slow.join(5)
    assert cache.get().node == "n2" and src.calls == 2


def test_after_invalidate_a_reader_waits_for_a_fresh_snapshot() -> None:
    src = Source()
    cache = StatusCache(src, ttl=60)
    assert cache.json()["node"] == "n1"
    assert cache.get().node == "n1" and src.calls == 1  # within the ttl: no computation
    cache.invalidate()
    assert cache.get().node == "n2"
    assert b'"node":"n2"' in cache.body() and src.calls == 2


def test_an_invalidation_during_a_computation_is_not_lost() -> None:
    src = Source()
    cache = StatusCache(src, ttl=60)
    cache.invalidate()
    src.gate.clear()
    first = threading.Thread(target=cache.get)
    first.start()
    assert src.entered.wait(5)
    cache.invalidate()  # asked for after n1's computation began: n1 does not satisfy it
    src.gate.set()
    first.join(5)
    assert cache.get().node == "n2"
