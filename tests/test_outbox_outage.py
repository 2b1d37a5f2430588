"""The issue's outage test: PostgreSQL stopped for 30 s while 4 cameras produce events, then
``kill -9`` of ``camfleet run``; restarted with PostgreSQL back, every event the pipelines
reported (the journal keeps delivered entries: it is the record) is in the database exactly
once, in its final state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from camfleet.events import Journal, journal_path
from camfleet.store import Store
from camfleet.vocabulary import Event, EventMessage, decode
from camfleet_testing.pgserver import FAST_SETTINGS, PgServer
from tests.support.runtime_helpers import camera_yaml, config_text

pytestmark = [pytest.mark.e2e, pytest.mark.soak]  # 30 s of database outage on the wall clock: beside the rest

OUTAGE_S = 30.0


class _Run:
    """``camfleet run CONFIG`` as a user runs it; its output is kept for failure messages."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "camfleet.cli", "run", str(config), "--skip-checks"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=config.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines[-80:])

    def kill9(self) -> None:
        """``kill -9`` the node; its children follow it (die_with_parent): wait for them too."""
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.kill()
        self.proc.wait(10)
        _gone, alive = psutil.wait_procs(children, timeout=15)
        assert not alive, f"children outlived the node: {alive}"
        self._reader.join(5)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)


def _pg_ctl(pg: PgServer, *args: str) -> None:
    assert pg.root is not None
    subprocess.run(pg._cmd(str(pg.bin_dir / "pg_ctl"), "-D", str(pg.root / "data"), *args),
                   check=True, capture_output=True, timeout=60)


def _pg_down(pg: PgServer) -> None:
    _pg_ctl(pg, "-m", "fast", "-w", "stop")


def _pg_up(pg: PgServer) -> None:
    assert pg.root is not None
    opts = [f"-k {pg.root / 'sock'}", f"-p {pg.port}", "-c listen_addresses=127.0.0.1"]
    opts += [f"-c {k}={v}" for k, v in pg.settings.items()]
    _pg_ctl(pg, "-l", str(pg.root / "server.log"), "-o", " ".join(opts), "-w", "-t", "60", "start")


@pytest.fixture(name="own_pg")
def own_pg_fixture() -> Iterator[PgServer]:
    """A PostgreSQL of this test alone (it is stopped and started again)."""
    with PgServer(FAST_SETTINGS) as pg:
        yield pg


def _until(ok: object, timeout: float, what: str, run: _Run) -> None:
    end = time.monotonic() + timeout
    while not ok():  # type: ignore[operator]
        assert time.monotonic() < end, f"{what} within {timeout} s:\n{run.output}"
        time.sleep(0.5)  # other processes do the work; nothing here to wait on


def _journal_events(path: Path) -> dict[str, tuple[int, Event]]:
    """Event id -> (how many messages, final state), from every entry the journal kept."""
    out: dict[str, tuple[int, Event]] = {}
    with Journal(path) as j:
        for e in j.entries("event"):
            m = decode(e.body)
            assert isinstance(m, EventMessage)
            n = out.get(m.event.id, (0, m.event))[0]
            out[m.event.id] = (n + 1, m.event)
    return out


def _journal_count(path: Path) -> int:
    with Journal(path) as j:
        return j.last_seq()


def test_postgres_down_30s_then_kill9_loses_no_event(tmp_path: Path, shm_dir: Path,
                                                     own_pg: PgServer) -> None:
    url = own_pg.create_database("outbox_outage")
    cams = "".join(camera_yaml(f"c{i}", i) for i in range(4))
    config = tmp_path / "camfleet.yaml"
    config.write_text(config_text(tmp_path / "data", cams) + f"storage: {{database: '{url}'}}\n")
    journal = journal_path(tmp_path / "data")
    store = Store.open(url, secret_key_path=tmp_path / "data" / "secret.key")
    run = _Run(config)
    try:
        _until(lambda: len({e.camera for e in store.query_events(limit=500)}) >= 2, 120,
               "events of two cameras in PostgreSQL", run)
        _pg_down(own_pg)
        down_at, seq_down = time.monotonic(), _journal_count(journal)
        _until(lambda: _journal_count(journal) > seq_down + 4, OUTAGE_S, "events journalled while down", run)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))  # the outage lasts 30 s
        run.kill9()
        reported = _journal_events(journal)
        assert len({ev.camera for _, ev in reported.values()}) == 4, "not every camera reported events"
        killed_seq = _journal_count(journal)
        assert _cursor(journal) < killed_seq, "nothing was waiting for the database"
        _pg_up(own_pg)
        run = _Run(config)
        _until(lambda: _cursor(journal) > killed_seq, 120, "the database sink caught up", run)
        run.stop()  # SIGTERM: the pump delivers what the cameras appended until they stopped
        assert run.proc.returncode == 0, run.output
    finally:
        run.stop()
    final = _journal_events(journal)
    assert set(reported) <= set(final)
    with Journal(journal) as j:
        assert j.cursors()["database"] == j.last_seq() and j.open_events() == {}
        assert j.counts().get("dropped", 0) == 0 and j.counts().get("skipped:database", 0) == 0
    listed = store.query_events(limit=100_000)
    rows = {e.id: e for e in listed}
    store_count = store.count_events()
    store.close()
    assert len(listed) == store_count
    assert len(rows) == store_count  # one row per event id (the primary key): exactly once
    assert set(rows) == set(final), (set(final) - set(rows), set(rows) - set(final))
    for event_id, (_, ev) in final.items():
        row = rows[event_id]
        assert row.end is not None, f"{event_id} still open"
        assert (row.camera, row.label, row.start, row.end, row.top_score, row.zones) == (
            ev.camera, ev.label, ev.start, ev.end, ev.top_score, ev.zones), event_id


def _cursor(journal: Path) -> int:
    with Journal(journal) as j:
        return j.cursors().get("database", 0)
