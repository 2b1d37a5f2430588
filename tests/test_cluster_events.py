"""The fleet's events leave the node durably: outbox -> CAMFLEET_EVENTS -> the central database.

Real nats-server processes (``nats1``/``nats3``), a real outbox journal and pump, a real
SQLite central database; the "agent" of one test is a separate process killed with -9.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, select

from camfleet.cluster.connection import NatsOptions, connect
from camfleet.cluster.events_consumer import ConsumerSettings, EventsConsumer, TokenBook
from camfleet.cluster.events_sink import FleetEventsSink, TokenView
from camfleet.cluster.kv import open_bucket
from camfleet.cluster.registry import DESIRED_BUCKET, EVENTS_STREAM, DesiredCamera, DesiredNode
from camfleet.events.journal import Journal
from camfleet.events.pump import Pump, PumpSettings
from camfleet.fleetstore.events import (
    Incoming,
    create_events_tables,
    events_table,
    query_events,
    query_rejected,
    rejected_count,
    store_batch,
)
from camfleet.store import engine as engines
from camfleet.vocabulary import Event, EventMessage, OutboxMessage
from camfleet_testing.nats import NatsHarness
from tests.support.fleet import cli_env, wait_for

pytestmark = pytest.mark.process

_T = TypeVar("_T")
NODE_A = "a" * 32
NODE_B = "b" * 32


def _msgs(ids: list[str], camera: str = "front", *, t0: float = 1000.0,
          end: bool = True) -> list[OutboxMessage]:
    """start (and end) of each event id, in that order."""
    out: list[OutboxMessage] = []
    for i, eid in enumerate(ids):
        ev = Event(id=eid, camera=camera, label="person", start=t0 + i, top_score=0.5)
        out.append(EventMessage("start", ev))
        if end:
            out.append(EventMessage("end", Event(id=eid, camera=camera, label="person", start=t0 + i,
                                                 end=t0 + i + 0.5, top_score=0.9)))
    return out


class Loop:
    """An asyncio loop in a thread, for the consumer and direct NATS calls from a plain test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.coordinators: list[Coordinator] = []

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float = 20.0) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        for coord in self.coordinators:
            coord.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Coordinator:
    """An :class:`EventsConsumer` running on its own connection in a :class:`Loop`."""

    def __init__(self, loop: Loop, url: str, engine: Engine, durable: str = "camfleet-events-db") -> None:
        self.loop = loop
        self.url = url
        self.engine = engine
        self.durable = durable
        self.consumer: EventsConsumer | None = None
        self.stopped = False
        self.loop.run(self._start())
        loop.coordinators.append(self)
        wait_for("the consumer reading",
                 lambda: self.consumer is not None and self.consumer.consuming.is_set(), 15)

    async def _start(self) -> None:
        self.client = await connect(NatsOptions(tuple(self.url.split(","))))
        self.consumer = EventsConsumer(self.client, self.engine, durable=self.durable,
                                       settings=ConsumerSettings(fetch_wait_s=0.2, ready_timeout_s=5.0,
                                                                 backoff_s=(0.1, 0.2, 0.5)))
        self.task = asyncio.get_running_loop().create_task(self.consumer.run())

    def stats(self) -> dict[str, Any]:
        assert self.consumer is not None
        return self.consumer.stats()

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True

        async def stop() -> None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            await self.client.close()

        self.loop.run(stop())


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    engine = engines.create(engines.parse_url(f"sqlite:///{tmp_path / 'fleet.db'}"))
    create_events_tables(engine)
    return engine


def _rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(select(events_table))}


def _all_ended(engine: Engine, ids: list[str]) -> Callable[[], bool]:
    def probe() -> bool:
        rows = _rows(engine)
        return all(i in rows and rows[i].change == "end" for i in ids)

    return probe


async def _stream_ids(url: str) -> list[str]:
    """The Nats-Msg-Id of every message in the stream, in stream order."""
    client = await connect(NatsOptions(tuple(url.split(","))))
    try:
        js = client.jetstream()
        info = await js.stream_info(EVENTS_STREAM)
        out = []
        for seq in range(int(info.state.first_seq), int(info.state.last_seq) + 1):
            msg = await js.get_msg(EVENTS_STREAM, seq)
            out.append((msg.headers or {})["Nats-Msg-Id"])
        return out
    finally:
        await client.close()


def _drain(pump: Pump, timeout: float = 20.0) -> None:
    """Step the pump until every entry went out (bounded)."""
    end = time.monotonic() + timeout
    while pump.stats()["lag"]:
        assert time.monotonic() < end, f"pump still has {pump.stats()}"
        if not pump.run_once():
            time.sleep(0.05)  # the sink is in its back-off


def test_resent_batch_after_a_crash_is_stored_once_in_stream_and_database(
        nats1: NatsHarness, tmp_path: Path, loop: Loop, db: Engine) -> None:
    journal_path = tmp_path / "outbox.db"
    ids = [f"ev{i:02d}" for i in range(10)]
    sink = FleetEventsSink(NatsOptions(tuple(nats1.urls)), NODE_A, lambda camera: 7)
    pump = Pump(journal_path, [sink])  # joins the fleet: sends what is journalled from now on
    with Journal(journal_path) as j:
        j.append(_msgs(ids))
    _drain(pump)
    pump.journal.close()
    # the crash: everything published, the cursor never saved; the next run sends it all again
    with sqlite3.connect(journal_path) as raw:
        raw.execute("UPDATE cursors SET seq = 0 WHERE sink = 'fleet'")
    pump = Pump(journal_path, [sink])
    _drain(pump)
    pump.journal.close()
    assert sink.stats()["published"] == 20 and sink.stats()["duplicates"] == 20
    sink.close()
    assert loop.run(_stream_ids(nats1.url)) == [f"{NODE_A}:{s}" for s in range(1, 21)]

    coord = Coordinator(loop, nats1.url, db)
    wait_for("every event ended in the database", _all_ended(db, ids), 15)
    wait_for("20 messages consumed", lambda: coord.stats()["consumed"] == 20, 5)
    coord.stop()
    # the same messages delivered again (another durable: a full replay), starts after ends
    replay = Coordinator(loop, nats1.url, db, durable="replay")
    wait_for("the replay consumed", lambda: replay.stats()["consumed"] == 20, 15)
    replay.stop()
    rows = _rows(db)
    assert sorted(rows) == ids
    assert all(r.change == "end" and r.end is not None and r.token == 7 and r.node == NODE_A
               for r in rows.values())
    assert rejected_count(db) == 0


def test_nats_down_then_back_loses_nothing_and_keeps_each_nodes_order(
        nats1: NatsHarness, tmp_path: Path, loop: Loop, db: Engine) -> None:
    journal_path = tmp_path / "outbox.db"
    sink = FleetEventsSink(NatsOptions(tuple(nats1.urls)), NODE_A, lambda camera: 3, publish_timeout_s=2.0)
    pump = Pump(journal_path, [sink], settings=PumpSettings(poll_s=0.02))
    pump.start()
    coord = Coordinator(loop, nats1.url, db)
    writer = Journal(journal_path)
    try:
        writer.append(_msgs(["before"]))
        wait_for("the first event stored", _all_ended(db, ["before"]), 10)
        nats1.kill(0)
        during = [f"down{i}" for i in range(5)]
        for m in _msgs(during, t0=2000.0):
            writer.append([m])  # one append per message: journal order is the order to keep
        wait_for("the pump finding NATS down", lambda: pump.sink_stats()["fleet"]["attempts"] > 0, 10)
        nats1.restart(0)
        assert pump.flush(30), pump.sink_stats()
        wait_for("the events of the outage stored", _all_ended(db, during), 20)
    finally:
        writer.close()
        pump.stop(2)
        sink.close()
        coord.stop()
    ids = loop.run(_stream_ids(nats1.url))
    seqs = [int(i.split(":")[1]) for i in ids]
    assert seqs == list(range(1, 13)), ids  # each journal entry once, in journal order
    assert sink.stats()["failed"] >= 1


_AGENT = """
import sys, time
from camfleet.cluster.connection import NatsOptions
from camfleet.cluster.events_sink import FleetEventsSink, TokenView
from camfleet.events.pump import Pump
from camfleet.events.journal import Journal
from camfleet.vocabulary import Event, EventMessage
url, path, node, count = sys.argv[1:5]
sink = FleetEventsSink(NatsOptions(tuple(url.split(","))), node, lambda camera: 4)
pump = Pump(path, [sink])
with Journal(path) as j:
    if count == "1":
        j.append([EventMessage("start", Event(id="last-words", camera="front", label="car", start=5.0))])
    else:
        j.append([EventMessage("start", Event(id=f"e{i}", camera="front", label="car", start=5.0))
                  for i in range(int(count))])
pump.start()
assert pump.flush(20)
print("flushed", flush=True)
time.sleep(60)
"""


def test_an_event_published_before_its_node_dies_is_consumed_even_after_its_camera_moved(
        nats1: NatsHarness, tmp_path: Path, loop: Loop, db: Engine) -> None:
    async def place(node: str, cameras: dict[str, int]) -> None:
        client = await connect(NatsOptions(tuple(nats1.urls)))
        bucket = await open_bucket(client.jetstream(), DESIRED_BUCKET)
        await bucket.put(node, DesiredNode(node, max(cameras.values(), default=1), 1,
                                           {c: DesiredCamera({}, t) for c, t in cameras.items()}).to_bytes())
        await client.close()

    loop.run(place(NODE_A, {"front": 4}))
    agent = subprocess.Popen([sys.executable, "-c", _AGENT, nats1.url, str(tmp_path / "outbox.db"), NODE_A,
                              "1"], stdout=subprocess.PIPE, env=cli_env())
    try:
        assert agent.stdout is not None
        assert agent.stdout.readline().strip() == b"flushed"
    finally:
        agent.kill()
        agent.wait(5)
    # the node is lost: its camera is placed elsewhere (a newer token) before any coordinator read it
    loop.run(place(NODE_A, {}))
    loop.run(place(NODE_B, {"front": 11}))
    coord = Coordinator(loop, nats1.url, db)
    wait_for("the dead node's event stored", lambda: "last-words" in _rows(db), 10)
    coord.stop()
    row = _rows(db)["last-words"]
    assert (row.node, row.token, row.change) == (NODE_A, 4, "start")
    assert rejected_count(db) == 0


def test_an_agent_killed_mid_delivery_sends_the_rest_once_when_it_comes_back(
        nats1: NatsHarness, tmp_path: Path, loop: Loop) -> None:
    async def stored() -> int:
        client = await connect(NatsOptions(tuple(nats1.urls)))
        try:
            return int((await client.jetstream().stream_info(EVENTS_STREAM)).state.messages)
        except Exception:
            return 0
        finally:
            await client.close()

    journal = str(tmp_path / "outbox.db")
    agent = subprocess.Popen([sys.executable, "-c", _AGENT, nats1.url, journal, NODE_A, "3000"],
                             stdout=subprocess.DEVNULL, env=cli_env())
    try:
        wait_for("the agent half way", lambda: loop.run(stored()) >= 600, 20, interval=0.01)
    finally:
        agent.kill()  # -9, somewhere between a publish and the save of the pump's cursor
        agent.wait(5)
    assert loop.run(stored()) < 3000
    with sqlite3.connect(journal) as raw:
        cursor = raw.execute("SELECT seq FROM cursors WHERE sink = 'fleet'").fetchone()[0]
    again = subprocess.Popen([sys.executable, "-c", _AGENT, nats1.url, journal, NODE_A, "0"],
                             stdout=subprocess.PIPE, env=cli_env())
    try:
        assert again.stdout is not None
        assert again.stdout.readline().strip() == b"flushed"
    finally:
        again.kill()
        again.wait(5)
    ids = loop.run(_stream_ids(nats1.url))
    assert ids == [f"{NODE_A}:{s}" for s in range(1, 3001)], (cursor, len(ids))


def test_a_stale_fencing_token_is_rejected_and_kept_aside(
        nats1: NatsHarness, tmp_path: Path, loop: Loop, db: Engine) -> None:
    async def setup() -> Any:
        client = await connect(NatsOptions(tuple(nats1.urls)))
        return client, await open_bucket(client.jetstream(), DESIRED_BUCKET)

    client, bucket = loop.run(setup())
    rev = loop.run(bucket.put(NODE_A, DesiredNode(NODE_A, 1, 1, {"front": DesiredCamera({}, 1)}).to_bytes()))
    assert rev >= 1
    tokens_a = {"front": 1}  # node A is partitioned later: it never learns that it lost the camera
    sink_a = FleetEventsSink(NatsOptions(tuple(nats1.urls)), NODE_A, tokens_a.get)
    sink_b = FleetEventsSink(NatsOptions(tuple(nats1.urls)), NODE_B, {"front": 2}.get)
    coord = Coordinator(loop, nats1.url, db)
    try:
        sink_a.write_entries(list(enumerate(_msgs(["a-live"], t0=10.0), start=1)))
        wait_for("A's event while it held the camera", _all_ended(db, ["a-live"]), 10)
        # the leader moves the camera: A's key without it first, then B's with a newer token
        loop.run(bucket.put(NODE_A, DesiredNode(NODE_A, 2, 1, {}).to_bytes()))
        loop.run(bucket.put(NODE_B, DesiredNode(NODE_B, 2, 1, {"front": DesiredCamera({}, 2)}).to_bytes()))
        wait_for("the consumer learning the new token", lambda: coord.consumer is not None
                 and coord.consumer.book.current("front") == 2, 10)
        # a deposed leader's late write (an older term) teaches nothing; the next one does
        node_c = "c" * 32
        loop.run(bucket.put(node_c, DesiredNode(node_c, 3, 0, {"front": DesiredCamera({}, 99)}).to_bytes()))
        loop.run(bucket.put(node_c, DesiredNode(node_c, 4, 1, {"side": DesiredCamera({}, 4)}).to_bytes()))
        assert coord.consumer is not None
        book = coord.consumer.book
        wait_for("the consumer reading the next write", lambda: book.current("side") == 4, 10)
        assert book.current("front") == 2 and coord.consumer.watcher.old_terms == 1
        sink_a.write_entries(list(enumerate(_msgs(["a-stale"], t0=20.0), start=3)))
        sink_b.write_entries(list(enumerate(_msgs(["b-live"], t0=30.0), start=1)))
        wait_for("B's event stored", _all_ended(db, ["b-live"]), 10)
        wait_for("A's stale messages rejected", lambda: rejected_count(db) == 2, 10)
    finally:
        coord.stop()
        sink_a.close()
        sink_b.close()
        loop.run(client.close())
    assert "a-stale" not in _rows(db)
    assert coord.stats()["stale"] == 2
    rejected = query_rejected(db, camera="front")
    assert {(r["node"], r["seq"], r["token"], r["current_token"], r["reason"]) for r in rejected} == {
        (NODE_A, 3, 1, 2, "stale-token"), (NODE_A, 4, 1, 2, "stale-token")}
    # the query helpers the API will use: filters and pages, newest first
    page = query_events(db, camera="front", limit=1)
    assert [e["id"] for e in page.items] == ["b-live"] and page.cursor is not None
    page2 = query_events(db, camera="front", limit=1, cursor=page.cursor)
    assert [e["id"] for e in page2.items] == ["a-live"] and page2.cursor is None
    assert query_events(db, label="car").items == []
    assert [e["id"] for e in query_events(db, after=15.0).items] == ["b-live"]
    assert page.items[0]["has_snapshot"] is False and page.items[0]["node"] == NODE_B
    with pytest.raises(ValueError, match="cursor"):
        query_events(db, cursor="bm90IGEgY3Vyc29y")


def test_hostile_messages_are_rejected_not_stored_and_do_not_stop_the_consumer(
        nats1: NatsHarness, loop: Loop, db: Engine) -> None:
    coord = Coordinator(loop, nats1.url, db)  # creates the stream

    async def publish() -> None:
        client = await connect(NatsOptions(tuple(nats1.urls)))
        js = client.jetstream()
        good = json.dumps({"kind": "event", "type": "start", "event": {
            "id": "ok", "camera": "front", "label": "dog", "start": 1.0}}).encode()
        await js.publish(f"camfleet.events.{NODE_A}", b"{not json", headers={"Nats-Msg-Id": f"{NODE_A}:1"})
        await js.publish(f"camfleet.events.{NODE_A}", good, headers={"Nats-Msg-Id": f"{NODE_B}:2"})
        await js.publish(f"camfleet.events.{NODE_A}", good, headers={
            "Nats-Msg-Id": f"{NODE_A}:3", "Camfleet-Token": "x"})
        await js.publish(f"camfleet.events.{NODE_A}", good, headers={
            "Nats-Msg-Id": f"{NODE_A}:4", "Camfleet-Camera": "back"})
        await js.publish(f"camfleet.events.{NODE_A}", good, headers={"Nats-Msg-Id": f"{NODE_A}:5"})
        await client.close()

    loop.run(publish())
    wait_for("the good one stored", lambda: "ok" in _rows(db), 10)
    wait_for("all five consumed", lambda: coord.stats()["consumed"] == 5, 5)
    coord.stop()
    assert coord.stats()["malformed"] == 4 and rejected_count(db) == 4
    assert _rows(db)["ok"].seq == 5


def test_killing_one_nats_server_of_three_loses_nothing(nats3: NatsHarness, tmp_path: Path, loop: Loop,
                                                        db: Engine) -> None:
    journal_path = tmp_path / "outbox.db"
    sink = FleetEventsSink(NatsOptions(tuple(nats3.urls)), NODE_A, lambda camera: 1, publish_timeout_s=3.0)
    pump = Pump(journal_path, [sink], settings=PumpSettings(poll_s=0.02))
    pump.start()
    coord = Coordinator(loop, nats3.url, db)
    writer = Journal(journal_path)
    try:
        first = [f"one{i}" for i in range(10)]
        writer.append(_msgs(first))
        wait_for("the first events stored", _all_ended(db, first), 15)

        async def leader() -> int:
            client = await connect(NatsOptions(tuple(nats3.urls)))
            info = await client.jetstream().stream_info(EVENTS_STREAM)
            await client.close()
            assert info.config.num_replicas == 3 and info.cluster is not None and info.cluster.leader
            return [s.spec.name for s in nats3.servers].index(info.cluster.leader)

        nats3.kill(loop.run(leader()))  # the server leading the stream: the worst one to lose
        second = [f"two{i}" for i in range(10)]
        for m in _msgs(second, t0=3000.0):
            writer.append([m])
        assert pump.flush(30), pump.sink_stats()
        wait_for("the events written during the loss stored", _all_ended(db, second), 30)
    finally:
        writer.close()
        pump.stop(2)
        sink.close()
        coord.stop()
    assert sorted(_rows(db)) == sorted(first + second)
    ids = loop.run(_stream_ids(nats3.url))
    assert [int(i.split(":")[1]) for i in ids] == list(range(1, 41))


def test_token_view_follows_the_applied_desired_state() -> None:
    view = TokenView()
    assert view("front") is None
    view.update(DesiredNode(NODE_A, 5, 1, {"front": DesiredCamera({}, 3)}))
    assert view("front") == 3
    view.update(DesiredNode(NODE_A, 6, 1, {}))
    assert view("front") is None


def test_token_book_rules() -> None:
    book = TokenBook()
    book.learn("c", 5, since=100.0)
    book.learn("c", 9, since=200.0)
    assert book.current("c") == 9 and book.current("other") is None
    assert book.stale("c", 5, 150.0) is None  # published while 5 was the newest
    assert book.stale("c", 5, 200.0) == 9
    assert book.stale("c", 9, 300.0) is None
    assert book.stale("c", None, 150.0) == 5  # no token: stale once any assignment existed
    assert book.stale("other", None, 1e12) is None


def test_postgresql_down_holds_the_batch_and_loses_nothing(nats1: NatsHarness, pg_url: str,
                                                          loop: Loop) -> None:
    import psycopg

    engine = engines.create(engines.parse_url(pg_url))
    database = engine.url.database
    admin = engine.url.set(database="postgres").render_as_string(hide_password=False)
    admin = admin.replace("postgresql+psycopg://", "postgresql://")

    def allow(on: bool) -> None:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS {str(on).lower()}'.encode())
            if not on:  # and drop the consumer's pooled connections: the database is gone for it
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                             (database,))

    create_events_tables(engine)
    coord = Coordinator(loop, nats1.url, engine)
    sink = FleetEventsSink(NatsOptions(tuple(nats1.urls)), NODE_A, lambda camera: 2)
    try:
        sink.write_entries(list(enumerate(_msgs(["pg0"]), start=1)))
        wait_for("the first event in PostgreSQL", _all_ended(engine, ["pg0"]), 10)
        allow(False)
        try:
            ids = [f"pg{i}" for i in range(1, 6)]
            sink.write_entries(list(enumerate(_msgs(ids), start=3)))
            wait_for("the consumer retrying", lambda: coord.stats()["db_retries"] > 0, 10)
        finally:
            allow(True)
        wait_for("the events of the outage stored", _all_ended(engine, ids), 15)
    finally:
        coord.stop()
        sink.close()
    assert len(_rows(engine)) == 6 and coord.stats()["dropped"] == 0
    # a late redelivery of an older state changes nothing (PostgreSQL's ON CONFLICT ... WHERE)
    store_batch(engine, [Incoming(NODE_A, 1, "front", _msgs(["pg0"], end=False)[0], 2, 1.0)])
    assert _rows(engine)["pg0"].change == "end"
    engine.dispose()
