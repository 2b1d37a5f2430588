"""What users mark on the fleet's events: reviewed, and retain (keep past retention), kept centrally.

Table ``fleet_event_flags`` (on :data:`camfleet.fleetstore.schema.metadata`), one row
per event a user marked: ``reviewed``; ``retained`` (null: as the node sent it);
``retain_pending`` while the owning node has not yet been told of ``retained`` (it
was unreachable), with the ``node`` to tell. The flags live apart from
``fleet_events`` because that table's rows are replaced by each state the node
sends; a user's mark must outlive them. Times are epoch seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Boolean, Column, ColumnElement, Engine, Float, String, Table, select, update
from sqlalchemy.exc import IntegrityError

from .events import events_table
from .schema import metadata

__all__ = ["EventFlags", "flags_of", "flags_table", "mark_retain_told", "pending_retains", "reviewed_filter",
           "set_retained", "set_reviewed"]

flags_table = Table(
    "fleet_event_flags", metadata,
    Column("id", String(128), primary_key=True),
    Column("reviewed", Boolean, nullable=False, default=False),
    Column("retained", Boolean, nullable=True),
    Column("retain_pending", Boolean, nullable=False, default=False, index=True),
    Column("node", String(128), nullable=True),
    Column("updated_at", Float, nullable=False),
)


@dataclass(frozen=True)
class EventFlags:
    """One event's marks; ``retained`` None: as its node reported; ``retain_pending``: node not told yet."""

    reviewed: bool = False
    retained: bool | None = None
    retain_pending: bool = False


_EMPTY: dict[str, object] = {"reviewed": False, "retained": None, "retain_pending": False, "node": None}


def _existing(engine: Engine, ids: Iterable[str]) -> list[str]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    with engine.connect() as conn:
        return [r.id for r in conn.execute(select(events_table.c.id).where(events_table.c.id.in_(wanted)))]


def _upsert(engine: Engine, event_id: str, **values: object) -> None:
    """Insert or update the flags row of ``event_id`` with ``values`` (one transaction)."""
    t = flags_table
    for attempt in (1, 2):
        try:
            with engine.begin() as conn:
                now = time.time()
                done = conn.execute(update(t).where(t.c.id == event_id).values(**values, updated_at=now))
                if done.rowcount == 0:
                    row = _EMPTY | values
                    conn.execute(t.insert().values(id=event_id, updated_at=now, **row))
            return
        except IntegrityError:
            if attempt == 2:  # another coordinator inserted it between our update and insert: update now
                raise


def set_reviewed(engine: Engine, ids: Iterable[str], reviewed: bool) -> int:
    """Mark the stored events among ``ids`` reviewed (or not), one transaction; how many exist (blocking)."""
    found = _existing(engine, ids)
    if not found:
        return 0
    t = flags_table
    for attempt in (1, 2):
        try:
            with engine.begin() as conn:
                now = time.time()
                conn.execute(update(t).where(t.c.id.in_(found)).values(reviewed=reviewed, updated_at=now))
                have = {r.id for r in conn.execute(select(t.c.id).where(t.c.id.in_(found)))}
                new = [_EMPTY | {"id": i, "reviewed": reviewed, "updated_at": now}
                       for i in found if i not in have]
                if new:
                    conn.execute(t.insert(), new)
            return len(found)
        except IntegrityError:
            if attempt == 2:  # another coordinator inserted some meanwhile: the second pass updates them
                raise
    return len(found)


def set_retained(engine: Engine, event_id: str, node: str, retained: bool, *, pending: bool) -> None:
    """Record the user's retain flag of ``event_id`` (held by ``node``); ``pending``: node not told yet."""
    _upsert(engine, event_id, retained=retained, retain_pending=pending, node=node)


def mark_retain_told(engine: Engine, event_id: str, retained: bool) -> bool:
    """Clear the pending mark once the node took ``retained``, unless the user changed it meanwhile."""
    t = flags_table
    with engine.begin() as conn:
        done = conn.execute(update(t).where(t.c.id == event_id, t.c.retained == retained)
                            .values(retain_pending=False, updated_at=time.time()))
    return bool(done.rowcount)


def pending_retains(engine: Engine, limit: int = 100) -> list[tuple[str, str, bool]]:
    """Up to ``limit`` (event id, node, retained) whose node has not been told yet, oldest first."""
    t = flags_table
    q = (select(t.c.id, t.c.node, t.c.retained).where(t.c.retain_pending.is_(True))
         .order_by(t.c.updated_at).limit(limit))
    with engine.connect() as conn:
        return [(r.id, r.node, bool(r.retained)) for r in conn.execute(q) if r.node is not None]


def flags_of(engine: Engine, ids: Iterable[str]) -> dict[str, EventFlags]:
    """The marks of those of ``ids`` a user marked (others: none)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    t = flags_table
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.reviewed, t.c.retained, t.c.retain_pending)
                            .where(t.c.id.in_(wanted)))
        return {r.id: EventFlags(bool(r.reviewed), r.retained, bool(r.retain_pending)) for r in rows}


def reviewed_filter(reviewed: bool) -> ColumnElement[bool]:
    """A condition on ``fleet_events`` rows: marked reviewed (True) or not (False)."""
    marked = select(flags_table.c.id).where(flags_table.c.reviewed.is_(True))
    return events_table.c.id.in_(marked) if reviewed else events_table.c.id.not_in(marked)
