"""The store: events, activity spans, recording segments, cameras, nodes and API tokens.

One :class:`Store` per process. Writes from the camera processes go through
:class:`camfleet.store.writer.StoreWriter` (one writer thread), readers use the
store directly; SQLite in WAL mode lets them run side by side.

Layout: each table family lives in its own module as one part of the store
(:mod:`~camfleet.store.events`, :mod:`~camfleet.store.activity`,
:mod:`~camfleet.store.segments`, :mod:`~camfleet.store.cameras`,
:mod:`~camfleet.store.nodes`, :mod:`~camfleet.store.tokens`), all on
:class:`~camfleet.store.base.StoreBase` (engine and transactions). :class:`Store`
combines them by inheritance rather than composition because callers use one flat
API (``store.query_events(...)``, ``store.add_segment(...)``) and ``write_batch``
needs three parts inside one transaction; delegating every method would only repeat
each signature. This module keeps what belongs to the whole database: opening,
migrating, closing and the writer's cross-table batch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from camfleet.redact import mask_text
from camfleet.store import engine as engines
from camfleet.store import migrate as migrations
from camfleet.store import recovery
from camfleet.store.activity import ActivityStore
from camfleet.store.base import db_reason
from camfleet.store.cameras import CameraStore
from camfleet.store.credentials import SecretBox
from camfleet.store.errors import StoreError
from camfleet.store.events import EventStore
from camfleet.store.nodes import NodeStore
from camfleet.store.records import ActivityRecord, EventRecord, SegmentRecord
from camfleet.store.segments import SegmentStore
from camfleet.store.tokens import ROLES, TOKEN_PREFIX, TokenStore

__all__ = ["ROLES", "TOKEN_PREFIX", "Store"]

log = logging.getLogger(__name__)


class Store(EventStore, ActivityStore, SegmentStore, CameraStore, NodeStore, TokenStore):
    """The camfleet database (SQLite file or PostgreSQL server) behind a small typed API.

    Methods are thread-safe (each one uses its own pooled connection and transaction).
    Times are epoch seconds, sizes bytes.
    """

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(cls, url: str, *, secret_key_path: Path | None = None, migrate: bool = True) -> Store:
        """Open (and by default migrate to head) the database at ``url``.

        ``sqlite:///PATH`` (parent directory created; WAL) or ``postgresql://...`` (psycopg 3).
        The camera-password key file defaults to ``<PATH>.key`` next to an SQLite database.
        Raises StoreError, with the URL's password masked, when the database cannot be used.
        """
        parsed = engines.parse_url(url)
        public = engines.public_url(url)
        path = engines.sqlite_path(parsed)
        where = f"database {path}" if path is not None else f"database {public}"
        if secret_key_path is None and path is not None:
            secret_key_path = path.with_name(path.name + ".key")
        engine = engines.create(parsed)
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1")).all()
                if path is not None:
                    conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").all()
            if migrate:
                cls._migrate(engine, where)
        except StoreError:
            engine.dispose()
            raise
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"cannot open {where}: {db_reason(exc)}") from None
        except Exception as exc:
            engine.dispose()
            raise StoreError(f"cannot open {where}: {mask_text(str(exc))}") from None
        # the box asks which rows are encrypted before it makes a key: a lost key is never replaced silently
        return cls(engine, public, SecretBox(secret_key_path, lambda: recovery.sealed_cameras(engine)))

    @staticmethod
    def _migrate(engine: Engine, where: str) -> None:
        current = migrations.current(engine)
        head = migrations.head()
        if current == head:
            return
        if current is not None and not migrations.known(current):
            raise StoreError(
                f"{where} is at schema revision {current!r}, newer than this camfleet knows (head {head!r}): "
                "upgrade camfleet; the database was left untouched"
            )
        migrations.upgrade(engine)
        log.info("store: %s migrated from %s to %s", where, current or "empty", head)

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Store({self.url_public!r})"

    # ------------------------------------------------------------------ batches (the writer's path)

    def write_batch(
        self,
        events: Sequence[EventRecord] = (),
        activities: Sequence[ActivityRecord] = (),
        segs: Sequence[SegmentRecord] = (),
    ) -> None:
        """Write events (upserted), activity spans and segments in one transaction."""
        with self._tx("writing a batch", write=True) as conn:
            self._upsert_events(conn, events)
            self._add_activity(conn, activities)
            self._add_segments(conn, segs)
