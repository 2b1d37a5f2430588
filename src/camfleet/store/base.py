"""What every part of the store shares: the engine, one transaction at a time, the dialect's INSERT.

:class:`StoreBase` is the root of the store's parts (events, activity, segments,
cameras, nodes, tokens); :class:`camfleet.store.store.Store` combines them. The parts
only ever talk to the database through :meth:`StoreBase._tx`, so every error reaches
callers as a :class:`StoreError` with the URL's password masked.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import SQLAlchemyError

from camfleet.redact import mask_text
from camfleet.store import engine as engines
from camfleet.store.credentials import SecretBox
from camfleet.store.errors import StoreError


def db_reason(exc: BaseException) -> str:
    """The driver's message of a database error, first line, credentials masked, no SQL or parameters."""
    orig = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(orig).splitlines() if ln.strip()]
    first = lines[0] if lines else type(orig).__name__
    return mask_text(first)


class StoreBase:
    """An open database: its engine, public URL, camera-password box and transactions.

    Methods are thread-safe (each one uses its own pooled connection and transaction).
    """

    def __init__(self, engine: Engine, url_public: str, box: SecretBox) -> None:
        self.engine = engine
        self.url_public = url_public
        self._box = box
        self._dialect = engine.dialect.name

    @contextmanager
    def _tx(self, what: str, *, write: bool = False) -> Iterator[Connection]:
        """One transaction; SQLite write transactions take the write lock up front (BEGIN IMMEDIATE)."""
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(**{engines.IMMEDIATE: True})
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"{what} failed on {self.url_public}: {db_reason(exc)}") from exc

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT (SQLite or PostgreSQL), which offers ON CONFLICT."""
        return (sqlite_dialect.insert if self._dialect == "sqlite" else pg_dialect.insert)(table)
