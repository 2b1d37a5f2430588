"""Database URLs and engines: SQLite (WAL) and PostgreSQL (psycopg 3), with errors that mask passwords."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from camfleet.redact import mask_text, mask_url
from camfleet.store.errors import StoreError

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long (ms) an SQLite connection waits for a lock before 'database is locked'."""

PG_CONNECT_TIMEOUT_S = 5
"""How long (s) a PostgreSQL connection attempt may take."""

IMMEDIATE = "camfleet_sqlite_immediate"
"""Execution option: begin the SQLite transaction with BEGIN IMMEDIATE (take the write lock first)."""


def public_url(url: str) -> str:
    """``url`` with its user name and password masked (never raises, whatever the URL)."""
    try:
        return mask_url(url)
    except ValueError:  # e.g. a non-numeric port
        return mask_text(url)


def parse_url(url: str) -> URL:
    """``url`` as an SQLAlchemy URL with the driver camfleet uses (pysqlite, psycopg 3).

    Raises StoreError (URL masked) for an unparseable URL or an unsupported database.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # an unparseable URL is not echoed: where its password is cannot be known
        raise StoreError(
            "bad database URL: not of the form sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        if parsed.get_driver_name() not in ("", "pysqlite"):
            raise StoreError(f"unsupported SQLite driver in {public_url(url)!r}: use sqlite:///PATH")
        db = parsed.database
        if not db or db == ":memory:" or db.startswith("file:"):
            raise StoreError(f"database URL {public_url(url)!r} names no file: use sqlite:///PATH")
        return parsed
    raise StoreError(f"unsupported database URL {public_url(url)!r}: use sqlite:///PATH or postgresql://...")


def sqlite_path(url: URL) -> Path | None:
    """The database file of an SQLite URL (None for other databases)."""
    if url.get_backend_name() != "sqlite" or not url.database:
        return None
    return Path(url.database)


def create(url: URL) -> Engine:
    """An engine for ``url`` (from :func:`parse_url`); SQLite files get their parent directory created."""
    path = sqlite_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory of database {path}: {exc.strerror}") from None
        engine = create_engine(
            url, hide_parameters=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        )
        _sqlite_setup(engine)
        return engine
    try:
        return create_engine(
            url,
            pool_pre_ping=True,
            hide_parameters=True,
            connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S, "application_name": "camfleet"},
        )
    except NoSuchModuleError as exc:  # pragma: no cover - psycopg is a dependency
        raise StoreError(f"no driver for {public_url(url.render_as_string())}: {exc}") from None


def _sqlite_setup(engine: Engine) -> None:
    """WAL, synchronous=NORMAL, foreign keys, busy timeout; explicit BEGIN (IMMEDIATE for writes)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
