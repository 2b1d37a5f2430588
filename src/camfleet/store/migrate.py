"""Schema migrations, run programmatically with Alembic (no alembic.ini)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from camfleet.store.engine import IMMEDIATE

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""Where the Alembic environment and versions ship (package data)."""

_PG_LOCK_KEY = 0x63616D666C656574  # "camfleet": serialises concurrent migrations on PostgreSQL


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the store's migrations, bound to ``connection`` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    """The newest revision shipped with this camfleet."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def current(engine: Engine) -> str | None:
    """The revision the database is at (None for a database never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` in one transaction (serialised across processes)."""
    _run(engine, lambda cfg: command.upgrade(cfg, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Migrate the database back to ``revision`` ("base": drop every table the store made)."""
    _run(engine, lambda cfg: command.downgrade(cfg, revision))


def _run(engine: Engine, fn: Callable[[Config], object]) -> None:
    with engine.connect() as conn:
        conn.execution_options(**{IMMEDIATE: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
            fn(alembic_config(conn))


def known(revision: str) -> bool:
    """Whether ``revision`` is one this camfleet ships."""
    script = ScriptDirectory.from_config(alembic_config())
    return any(s.revision == revision for s in script.walk_revisions())
