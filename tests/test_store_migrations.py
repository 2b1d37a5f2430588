"""Migrations on SQLite and PostgreSQL: fresh -> head, down to base and up again, schema == models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from camfleet.store import EventRecord, Store
from camfleet.store import migrate as migrations
from camfleet.store.schema import metadata

pytestmark = pytest.mark.process

TABLES = {"events", "snapshots", "activity", "segments", "cameras", "deleted_cameras", "staged_cameras",
          "nodes", "tokens"}


def _diff(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, metadata))


def test_fresh_database_to_head_matches_models(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        assert migrations.current(store.engine) == migrations.head()
        assert set(inspect(store.engine).get_table_names()) >= TABLES
        assert _diff(store) == []
    finally:
        store.close()


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    store = Store.open(db_url)
    try:
        store.upsert_event(EventRecord("e1", "c", "car", 1.0))
        migrations.downgrade(store.engine, "base")
        assert migrations.current(store.engine) is None
        assert not TABLES & set(inspect(store.engine).get_table_names())
        migrations.upgrade(store.engine)
        assert migrations.current(store.engine) == migrations.head()
        assert _diff(store) == []
        assert store.count_events() == 0
        store.upsert_event(EventRecord("e1", "c", "car", 1.0))
        assert store.count_events() == 1
    finally:
        store.close()


def test_reopen_is_idempotent_and_keeps_data(db_url: str) -> None:
    store = Store.open(db_url)
    store.upsert_event(EventRecord("e1", "c", "car", 1.0))
    store.close()
    for migrate in (True, False):
        again = Store.open(db_url, migrate=migrate)
        try:
            assert again.count_events() == 1
            assert migrations.current(again.engine) == migrations.head()
        finally:
            again.close()


def test_migrate_false_leaves_an_empty_database_alone(db_url: str) -> None:
    store = Store.open(db_url, migrate=False)
    try:
        assert migrations.current(store.engine) is None
        assert not TABLES & set(inspect(store.engine).get_table_names())
    finally:
        store.close()


def test_migration_files_ship_with_the_package() -> None:
    assert (migrations.MIGRATIONS_DIR / "env.py").is_file()
    assert (migrations.MIGRATIONS_DIR / "script.py.mako").is_file()
    assert list((migrations.MIGRATIONS_DIR / "versions").glob("0001_*.py"))
