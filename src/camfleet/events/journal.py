"""The outbox journal: ``<data_dir>/outbox.db``, a SQLite WAL file every camera process appends to.

Tables:

* ``entries(seq, at, kind, key, body)``: one row per :data:`~camfleet.vocabulary.OutboxMessage`,
  ``seq`` increasing, ``at`` epoch seconds of the append, ``body`` the message's JSON;
* ``cursors(sink, seq)``: for each durable sink, the last ``seq`` it confirmed;
* ``open_events(id, camera, last_seen, body)``: events started and not ended, with the
  epoch seconds they were last seen and their newest state, kept in the same transaction
  as the appends that start, update or end them;
* ``open_spans(camera, kind, start, end)``: activity spans journalled ``open`` and not yet
  closed, with how far they have lasted so far (``end``), kept in the same transaction as the
  appends that open, extend or close them;
* ``counters(name, value)``: losses and skips, so they survive restarts (and ``pump_runs``);
* ``sink_runs(sink, run)``: the last pump run each sink was delivered in (see
  :meth:`Journal.register_sinks`).

Each process opens its own :class:`Journal` (one sqlite3 connection, not shared between
threads). An append commits with ``synchronous=FULL``: once :meth:`Journal.append` returns,
the entries are on disk and survive ``kill -9`` of any process (and power loss).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from camfleet.vocabulary import (
    ActivityMessage,
    Event,
    EventMessage,
    MotionSpan,
    OutboxMessage,
    decode,
    encode,
    message_key,
    message_kind,
)

log = logging.getLogger("camfleet.events")

FILE_NAME = "outbox.db"
BUSY_TIMEOUT_S = 30.0
"""How long (seconds) a writer waits for another process's transaction before failing."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS open_events (
    id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    last_seen REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS open_events_camera ON open_events (camera);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sink_runs (sink TEXT PRIMARY KEY, run INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS open_spans (
    camera TEXT NOT NULL,
    kind TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    PRIMARY KEY (camera, kind, start)
);
"""

OPEN_SPAN_GRACE_S = 60.0
"""How long (seconds) past its last extension a span left open by a dead process is closed.

The process died while the activity was going on, and nobody watched the camera until its
restart: the span is closed at the restart, but never more than this after its last extension
(a camera down for hours must not claim hours of footage)."""


@dataclass(frozen=True)
class Entry:
    """One journalled message: its sequence number, append time (epoch seconds) and JSON body."""

    seq: int
    at: float
    kind: str
    key: str
    body: str


def journal_path(data_dir: Path) -> Path:
    """``<data_dir>/outbox.db``."""
    return Path(data_dir) / FILE_NAME


class Journal:
    """One process's connection to the outbox file (create it if missing, owner-only 0600).

    Not thread-safe: give each thread its own :class:`Journal`.
    """

    def __init__(self, path: Path | str, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # create the file owner-only before SQLite does (it would use the umask)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE), so a writer takes the
        # write lock up front instead of failing on upgrade from a read lock
        self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        with self._write():
            for stmt in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(stmt)
        for suffix in ("-wal", "-shm"):  # WAL side files hold the same data: owner-only too
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ------------------------------------------------------------------ producers

    def append(self, messages: Sequence[OutboxMessage], *,
               seen: Mapping[str, float] | None = None) -> int:
        """Journal ``messages`` in one transaction (durable on return); returns the last seq (0: none).

        Event messages also update ``open_events``: a start/update opens or refreshes the event,
        an end removes it. ``seen`` maps open event ids to when (epoch seconds) they were last
        seen, refreshing their ``last_seen`` in the same transaction.
        """
        if not messages and not seen:
            return 0
        now = time.time()
        last = 0
        with self._write() as db:
            for m in messages:
                cur = db.execute("INSERT INTO entries (at, kind, key, body) VALUES (?, ?, ?, ?)",
                                 (now, message_kind(m), message_key(m), encode(m)))
                last = int(cur.lastrowid or 0)
                if isinstance(m, EventMessage):
                    self._track(db, m)
                elif isinstance(m, ActivityMessage):
                    self._track_span(db, m.span)
            if seen:
                db.executemany("UPDATE open_events SET last_seen = max(last_seen, ?) WHERE id = ?",
                               [(float(t), i) for i, t in seen.items()])
        return last

    @staticmethod
    def _track(db: sqlite3.Connection, m: EventMessage) -> None:
        ev = m.event
        if m.type == "end" or ev.end is not None:
            db.execute("DELETE FROM open_events WHERE id = ?", (ev.id,))
            return
        seen = ev.data.get("last_seen")
        last_seen = float(seen) if isinstance(seen, int | float) else ev.start
        db.execute(
            "INSERT INTO open_events (id, camera, last_seen, body) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen), "
            "body = excluded.body",
            (ev.id, ev.camera, last_seen, encode(m)),
        )

    @staticmethod
    def _track_span(db: sqlite3.Connection, span: MotionSpan) -> None:
        key = (span.camera, span.kind, float(span.start))
        if not span.open:
            db.execute("DELETE FROM open_spans WHERE camera = ? AND kind = ? AND start = ?", key)
            return
        db.execute('INSERT INTO open_spans (camera, kind, start, "end") VALUES (?, ?, ?, ?) '
                   'ON CONFLICT (camera, kind, start) DO UPDATE SET "end" = max("end", excluded."end")',
                   (*key, float(span.end)))

    def open_spans(self, camera: str | None = None) -> list[MotionSpan]:
        """Activity spans still open (``open`` true, ``end`` how far they lasted), of one camera or all."""
        sql = 'SELECT camera, kind, start, "end" FROM open_spans'
        args: tuple[str, ...] = ()
        if camera is not None:
            sql, args = sql + " WHERE camera = ?", (camera,)
        return [MotionSpan(str(c), k, float(s), float(e), open=True)
                for c, k, s, e in self._db.execute(sql + " ORDER BY start", args).fetchall()]

    def close_open_spans(self, camera: str | None = None, *, now: float | None = None,
                         grace_s: float = OPEN_SPAN_GRACE_S) -> list[MotionSpan]:
        """Close the open activity spans of ``camera`` (all cameras if None) whose process is gone.

        Each is closed at ``now`` (epoch seconds; default the clock), but at most ``grace_s``
        after its last extension (see :data:`OPEN_SPAN_GRACE_S`): one closing message is
        appended per span and the spans are forgotten, in one transaction. Call it where
        :meth:`close_open_events` is called: before a camera's pipeline starts, and for all
        cameras when a node starts.
        """
        now = time.time() if now is None else now
        with self._write() as db:
            sql = 'SELECT camera, kind, start, "end" FROM open_spans'
            rows = (db.execute(sql).fetchall() if camera is None
                    else db.execute(sql + " WHERE camera = ?", (camera,)).fetchall())
            closed: list[MotionSpan] = []
            for cam, kind, start, end in rows:
                last = float(end)
                span = MotionSpan(str(cam), kind, float(start), max(last, min(now, last + grace_s)))
                m = ActivityMessage(span)
                db.execute("INSERT INTO entries (at, kind, key, body) VALUES (?, ?, ?, ?)",
                           (now, "activity", message_key(m), encode(m)))
                db.execute("DELETE FROM open_spans WHERE camera = ? AND kind = ? AND start = ?",
                           (cam, kind, start))
                closed.append(span)
        if closed:
            log.info("closed %d activity span(s) left open%s", len(closed),
                     f" on camera {camera}" if camera else "")
        return closed

    def open_events(self, camera: str | None = None) -> dict[str, float]:
        """Open events (id -> last seen, epoch seconds), of one camera or all."""
        if camera is None:
            rows = self._db.execute("SELECT id, last_seen FROM open_events")
        else:
            rows = self._db.execute("SELECT id, last_seen FROM open_events WHERE camera = ?", (camera,))
        return {str(i): float(t) for i, t in rows}

    def close_open_events(self, camera: str | None = None) -> list[Event]:
        """End the open events of ``camera`` (all cameras if None) at their last-seen time.

        Appends one ``end`` message per event (so every sink learns of it) and forgets them, in
        one transaction; returns the ended events. Call it before a camera's pipeline starts
        (its old process is gone) or, for all cameras, when a node starts after a crash.
        """
        with self._write() as db:
            if camera is None:
                rows = db.execute("SELECT id, last_seen, body FROM open_events ORDER BY last_seen").fetchall()
            else:
                rows = db.execute("SELECT id, last_seen, body FROM open_events WHERE camera = ? "
                                  "ORDER BY last_seen", (camera,)).fetchall()
            ended: list[Event] = []
            now = time.time()
            for _, last_seen, body in rows:
                m = decode(body)
                assert isinstance(m, EventMessage)
                ev = m.event
                ev.end = max(ev.start, float(last_seen))
                ev.data["last_seen"] = ev.end
                ev.data["closed"] = "process ended"
                end = EventMessage("end", ev)
                db.execute("INSERT INTO entries (at, kind, key, body) VALUES (?, ?, ?, ?)",
                           (now, "event", ev.id, encode(end)))
                span = ActivityMessage(MotionSpan(ev.camera, "event", ev.start, ev.end))
                db.execute("INSERT INTO entries (at, kind, key, body) VALUES (?, ?, ?, ?)",
                           (now, "activity", message_key(span), encode(span)))
                db.execute("DELETE FROM open_events WHERE id = ?", (ev.id,))
                ended.append(ev)
        if ended:
            log.info("closed %d event(s) left open%s at their last-seen time", len(ended),
                     f" on camera {camera}" if camera else "")
        return ended

    # ------------------------------------------------------------------ readers

    def last_seq(self) -> int:
        """The newest entry's seq (0 when the journal is empty)."""
        row = self._db.execute("SELECT max(seq) FROM entries").fetchone()
        return int(row[0] or 0)

    def read(self, after: int, limit: int) -> list[Entry]:
        """Up to ``limit`` entries with ``seq > after``, oldest first."""
        rows = self._db.execute("SELECT seq, at, kind, key, body FROM entries WHERE seq > ? ORDER BY seq "
                                "LIMIT ?", (after, limit))
        return [Entry(int(s), float(a), str(k), str(y), str(b)) for s, a, k, y, b in rows]

    def entries(self, kind: str | None = None) -> Iterable[Entry]:
        """Every entry still kept (of one kind, or all), oldest first."""
        sql = "SELECT seq, at, kind, key, body FROM entries"
        args: tuple[str, ...] = ()
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", (kind,)
        for s, a, k, y, b in self._db.execute(sql + " ORDER BY seq", args).fetchall():
            yield Entry(int(s), float(a), str(k), str(y), str(b))

    def count(self) -> int:
        """How many entries are kept."""
        return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])

    # ------------------------------------------------------------------ cursors

    def cursor(self, sink: str, *, default: int = 0) -> int:
        """The last seq ``sink`` confirmed; a new sink is registered at ``default``."""
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO cursors (sink, seq) VALUES (?, ?)", (sink, default))
            return int(db.execute("SELECT seq FROM cursors WHERE sink = ?", (sink,)).fetchone()[0])

    def register_sinks(self, sinks: Mapping[str, bool]) -> dict[str, int]:
        """Start a pump run for ``sinks`` (name -> starts from the tail); returns their cursors.

        A sink delivered in the previous run resumes at its cursor, whatever it missed since
        (a broker down while the node was stopped loses nothing). A sink that starts from the
        tail and was *not* part of the previous run -- new, or configured again after being
        removed -- starts at the journal's end, so it is not sent history it was never
        configured for. Any other sink resumes (or starts at 0).
        """
        with self._write() as db:
            db.execute("INSERT INTO counters (name, value) VALUES ('pump_runs', 1) "
                       "ON CONFLICT (name) DO UPDATE SET value = value + 1")
            run = int(db.execute("SELECT value FROM counters WHERE name = 'pump_runs'").fetchone()[0])
            tail = int(db.execute("SELECT max(seq) FROM entries").fetchone()[0] or 0)
            out: dict[str, int] = {}
            for sink, from_tail in sinks.items():
                row = db.execute("SELECT run FROM sink_runs WHERE sink = ?", (sink,)).fetchone()
                fresh = row is None or int(row[0]) < run - 1
                if from_tail and fresh:
                    db.execute("INSERT INTO cursors (sink, seq) VALUES (?, ?) "
                               "ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq", (sink, tail))
                else:
                    db.execute("INSERT OR IGNORE INTO cursors (sink, seq) VALUES (?, 0)", (sink,))
                db.execute("INSERT INTO sink_runs (sink, run) VALUES (?, ?) "
                           "ON CONFLICT (sink) DO UPDATE SET run = excluded.run", (sink, run))
                out[sink] = int(db.execute("SELECT seq FROM cursors WHERE sink = ?", (sink,)).fetchone()[0])
            return out

    def cursors(self) -> dict[str, int]:
        """Every durable sink's cursor."""
        return {str(s): int(q) for s, q in self._db.execute("SELECT sink, seq FROM cursors")}

    def advance(self, sink: str, seq: int) -> None:
        """Record that ``sink`` confirmed every entry up to ``seq`` (never moves back)."""
        with self._write() as db:
            db.execute("UPDATE cursors SET seq = max(seq, ?) WHERE sink = ?", (seq, sink))

    # ------------------------------------------------------------------ counters

    def add_count(self, name: str, n: int) -> None:
        """Add ``n`` to the persistent counter ``name``."""
        with self._write() as db:
            db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (name, n))

    def counts(self) -> dict[str, int]:
        """Every persistent counter (``dropped``, ``skipped:<sink>``, ...)."""
        return {str(k): int(v) for k, v in self._db.execute("SELECT name, value FROM counters")}

    # ------------------------------------------------------------------ bounds

    def enforce_bounds(self, *, max_entries: int, keep_delivered: int,
                       sinks: Collection[str] | None = None) -> tuple[int, int]:
        """Trim delivered entries past ``keep_delivered`` and drop undelivered ones past ``max_entries``.

        Delivered means confirmed by every active durable sink (``sinks``, default every cursor;
        the lowest cursor counts). When more than ``max_entries`` entries wait for the slowest
        sink, the oldest of them are skipped for every lagging sink: counted in ``dropped`` and
        logged. The cursors of inactive sinks (a store configured away) never hold entries back:
        they move up with the trim. Returns (trimmed, dropped).
        """
        with self._write() as db:
            newest = int(db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0])
            cursors = {str(s): int(q) for s, q in db.execute("SELECT sink, seq FROM cursors")}
            active = [q for s, q in cursors.items() if sinks is None or s in sinks]
            floor = min(active, default=0)
            dropped = 0
            if newest - floor > max_entries:
                new_floor = newest - max_entries
                dropped = int(db.execute("SELECT count(*) FROM entries WHERE seq > ? AND seq <= ?",
                                         (floor, new_floor)).fetchone()[0])
                db.executemany("UPDATE cursors SET seq = ? WHERE sink = ? AND seq < ?",
                               [(new_floor, s, new_floor) for s in cursors if sinks is None or s in sinks])
                if dropped:
                    db.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                               "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (dropped,))
                floor = new_floor
            # keep the newest keep_delivered of the delivered entries (seq <= floor)
            cut = floor - keep_delivered
            trimmed = 0
            if cut > 0:
                trimmed = db.execute("DELETE FROM entries WHERE seq <= ?", (cut,)).rowcount
                db.execute("UPDATE cursors SET seq = ? WHERE seq < ?", (cut, cut))  # inactive sinks
        if dropped:
            log.error("outbox: a sink lags more than %d entries: dropped the %d oldest undelivered entries",
                      max_entries, dropped)
        return trimmed, dropped
