"""The outbox journal and pump, in one process (and several for concurrent appends).

Append/cursor/trim/drop, open-event tracking and closing, concurrent appends from processes,
and the pump: a poisoned message does not stop the next 1,000; an outage is retried.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from camfleet.events import Journal, OutboxProducer, Pump, PumpSettings
from camfleet.events.jsonl import JsonlSink
from camfleet.vocabulary import (
    ActivityMessage,
    Event,
    EventMessage,
    MotionSpan,
    OutboxMessage,
    SegmentMessage,
    SegmentRecord,
    decode,
    encode,
)

pytestmark = pytest.mark.unit

T0 = 1_700_000_000.0


def _ev(i: int, change: str = "start", *, camera: str = "cam1", end: float | None = None,
        last_seen: float | None = None) -> EventMessage:
    data = {} if last_seen is None else {"last_seen": last_seen}
    return EventMessage(change, Event(id=f"e{i}", camera=camera, label="person", start=T0 + i,  # type: ignore[arg-type]
                                      end=end, top_score=0.5, data=data))


class _ListSink:
    """Collects what it is given; raises for the poisoned keys (not an outage)."""

    name = "list"

    def __init__(self, poison: set[str] | None = None) -> None:
        self.got: list[OutboxMessage] = []
        self.poison = poison or set()
        self.calls = 0

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        self.calls += 1
        for m in messages:
            if isinstance(m, EventMessage) and m.event.id in self.poison:
                raise ValueError(f"poisoned {m.event.id}")
        self.got.extend(messages)


def test_encoding_round_trips_every_kind() -> None:
    msgs: list[OutboxMessage] = [
        _ev(1, end=T0 + 3),
        SegmentMessage(SegmentRecord("cam1", "cam1/a.mp4", T0, T0 + 6, 1000, 90, 3)),
        ActivityMessage(MotionSpan("cam1", "motion", T0, T0 + 2.5)),
    ]
    for m in msgs:
        assert decode(encode(m)) == m
    with pytest.raises(ValueError):
        decode('{"kind": "teleport"}')


def test_append_read_cursor_and_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Journal(path) as j:
        assert j.append([_ev(i) for i in range(5)]) == 5
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert [e.seq for e in j.read(0, 3)] == [1, 2, 3]
        assert j.cursor("db") == 0
        j.advance("db", 3)
        j.advance("db", 2)  # never moves back
        assert j.cursors() == {"db": 3}
        assert [e.key for e in j.read(j.cursor("db"), 10)] == ["e3", "e4"]
    with Journal(path) as again:  # durable across connections
        assert again.cursor("db") == 3 and again.last_seq() == 5


def test_trim_keeps_newest_delivered_and_drop_counts_lagging(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with Journal(tmp_path / "outbox.db") as j:
        j.append([_ev(i) for i in range(100)])
        j.cursor("fast")
        j.cursor("slow")
        j.advance("fast", 100)
        j.advance("slow", 60)
        trimmed, dropped = j.enforce_bounds(max_entries=1000, keep_delivered=10)
        assert (trimmed, dropped) == (50, 0)  # delivered to both: 1..60; the newest 10 of them stay
        assert j.count() == 50 and next(iter(j.entries())).seq == 51
        j.append([_ev(i) for i in range(100, 200)])  # slow now lags by 140
        trimmed, dropped = j.enforce_bounds(max_entries=100, keep_delivered=10)
        assert dropped == 40 and j.cursors()["slow"] == 100 and j.counts()["dropped"] == 40
        assert "dropped the 40 oldest undelivered" in caplog.text
        assert j.count() == 110  # 100 undelivered + 10 delivered kept


def test_open_events_tracked_with_appends_and_closed_at_last_seen(tmp_path: Path) -> None:
    with Journal(tmp_path / "outbox.db") as j:
        j.append([_ev(1, last_seen=T0 + 1), _ev(2, camera="cam2")])
        j.append([], seen={"e1": T0 + 7.5})
        j.append([_ev(3)])
        j.append([_ev(3, "end", end=T0 + 9)])
        assert j.open_events() == {"e1": T0 + 7.5, "e2": T0 + 2}
        closed = j.close_open_events("cam1")
        assert [(e.id, e.end) for e in closed] == [("e1", T0 + 7.5)]
        assert j.open_events() == {"e2": T0 + 2}
        tail = [decode(e.body) for e in j.read(4, 10)]
        assert tail[0] == EventMessage("end", closed[0])
        assert tail[1] == ActivityMessage(MotionSpan("cam1", "event", T0 + 1, T0 + 7.5))
        assert [e.id for e in j.close_open_events()] == ["e2"] and j.open_events() == {}


def _append_many(path: str, worker: int, n: int) -> None:
    producer = OutboxProducer(path)
    for i in range(n):
        producer.append([_ev(worker * 10_000 + i, camera=f"cam{worker}")])
    producer.close()


def test_concurrent_appends_from_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.db")
    Journal(path).close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(path, w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Journal(path) as j:
        keys = [e.key for e in j.entries()]
        assert len(keys) == 800 and len(set(keys)) == 800
        assert len(j.open_events()) == 800


def test_poisoned_message_does_not_stop_the_next_1000(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "outbox.db"
    with Journal(path) as j:
        j.append([_ev(0)])
        j.append([_ev(-1, camera="poison")])  # the poisoned one
        j.append([_ev(i) for i in range(1, 1001)])
        with j._write() as db:  # an entry that does not even decode
            db.execute("INSERT INTO entries (at, kind, key, body) VALUES (0, 'event', 'x', '{not json')")
        j.append([_ev(1001)])
    sink = _ListSink(poison={"e-1"})
    pump = Pump(path, [sink], settings=PumpSettings(batch=500))
    while pump.run_once():
        pass
    ids = [m.event.id for m in sink.got if isinstance(m, EventMessage)]
    assert ids == ["e0", *(f"e{i}" for i in range(1, 1002))]
    assert pump.counts["skipped"] == 2 and pump.journal.counts()["skipped:list"] == 2
    assert pump.journal.cursors()["list"] == pump.journal.last_seq()
    assert "refused entry 2" in caplog.text and "poisoned e-1" in caplog.text
    pump.stop()


class _FlakySink(_ListSink):
    """Down (OperationalError, an outage) for its first ``down`` writes."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        if self.down > 0:
            self.down -= 1
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        super().write(messages)


def test_outage_is_retried_whole_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Journal(path) as j:
        j.append([_ev(i) for i in range(10)])
    sink = _FlakySink(down=3)
    pump = Pump(path, [sink], settings=PumpSettings(batch=100))
    pump.start()
    try:
        assert pump.flush(timeout=20)
    finally:
        pump.stop()
    assert len(sink.got) == 10 and pump.counts["retries"] == 3 and pump.counts["skipped"] == 0


def test_listeners_get_the_tail_in_the_rest_shape_and_jsonl_sink(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Journal(path) as j:
        j.append([_ev(0)])  # before the pump: not live
    pump = Pump(path, [JsonlSink(tmp_path / "events.jsonl")])
    notes: list[dict[str, object]] = []
    pump.add_listener(notes.append)
    with Journal(path) as j:
        j.append([_ev(1), _ev(1, "end", end=T0 + 4)])
    while pump.run_once():
        pass
    assert [n["event_type"] for n in notes] == ["start", "end"]
    assert notes[1]["event"] == {"id": "e1", "camera": "cam1", "label": "person", "start": T0 + 1,
                                 "end": T0 + 4, "top_score": 0.5, "zones": [], "has_snapshot": False,
                                 "retained": False, "data": {}}
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 3 and '"type": "end"' in lines[2]
    pump.stop()


def test_producer_coalesces_last_seen_and_commits_it_before_closing(tmp_path: Path) -> None:
    producer = OutboxProducer(tmp_path / "outbox.db")
    producer.append([_ev(1)], {"e1": T0 + 1})
    producer.append([], {"e1": T0 + 2})  # within SEEN_PERIOD_S of the last commit: held back
    assert producer.journal.open_events() == {"e1": T0 + 1}
    closed = producer.close_open_events("cam1")
    assert [(e.id, e.end) for e in closed] == [("e1", T0 + 2)]
    producer.close()


def test_an_inactive_sink_never_holds_entries_back(tmp_path: Path) -> None:
    with Journal(tmp_path / "outbox.db") as j:
        j.cursor("jsonl")  # a sink of an earlier run (no store then)
        j.cursor("database")
        j.append([_ev(i) for i in range(50)])
        j.advance("database", 50)
        trimmed, dropped = j.enforce_bounds(max_entries=10, keep_delivered=5, sinks={"database"})
        assert (trimmed, dropped) == (45, 0) and j.cursors() == {"database": 50, "jsonl": 45}


class _DownSink(_ListSink):
    """A destination that is unreachable (ConnectionError, an outage) until ``up`` is set."""

    name = "down"

    def __init__(self) -> None:
        super().__init__()
        self.up = threading.Event()
        self.from_tail = True
        self.backoff_s = (0.05,)

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        if not self.up.is_set():
            raise ConnectionError("broker mqtt://user:hunter2@127.0.0.1:1 refused the connection")
        super().write(messages)

    def stats(self) -> dict[str, int]:
        return {"delivered": len(self.got)}


class _SlowSink(_ListSink):
    """Blocks every write until ``release`` is set."""

    name = "slow"

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def write(self, messages: Sequence[OutboxMessage]) -> None:
        assert self.release.wait(30)
        super().write(messages)


def test_a_down_or_slow_sink_holds_up_no_other_and_a_new_one_starts_at_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Journal(path) as j:
        j.append([_ev(i) for i in range(5)])  # history: a sink new from today does not get it
    fast, down, slow = _ListSink(), _DownSink(), _SlowSink()
    pump = Pump(path, [slow, down, fast], settings=PumpSettings(batch=100, poll_s=0.01))
    pump.start()
    try:
        with Journal(path) as j:
            j.append([_ev(i) for i in range(5, 10)])
        deadline = time.monotonic() + 20
        while len(fast.got) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(fast.got) == 10  # while "slow" hangs and "down" is down
        rows = pump.sink_stats()
        assert rows["down"]["attempts"] >= 1 and rows["down"]["lag"] == 5 and rows["down"]["delivered"] == 0
        assert "hunter2" not in rows["down"]["error"] and rows["list"]["lag"] == 0
        down.up.set()
        slow.release.set()
        assert pump.flush(timeout=20)
        assert pump.sink_stats()["down"]["attempts"] == 0
    finally:
        pump.stop()
    assert [m.event.id for m in down.got if isinstance(m, EventMessage)] == [f"e{i}" for i in range(5, 10)]
    assert len(slow.got) == 10


def test_a_tail_sink_resumes_after_a_restart_but_not_after_a_run_without_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Journal(path) as j:
        j.append([_ev(i) for i in range(3)])  # history before the broker was configured
        assert j.register_sinks({"database": False, "mqtt": True}) == {"database": 0, "mqtt": 3}
        j.append([_ev(i) for i in range(3, 6)])  # journalled while the broker was down, then a stop
        # next run, same sinks: the broker resumes where it stopped (loses nothing)
        assert j.register_sinks({"database": False, "mqtt": True}) == {"database": 0, "mqtt": 3}
        j.advance("mqtt", 6)
        j.register_sinks({"database": False})  # a run with the broker removed from the config
        j.append([_ev(i) for i in range(6, 9)])
        # configured again: starts at the tail, not with what it was never configured for
        assert j.register_sinks({"database": False, "mqtt": True})["mqtt"] == 9
