"""Bad input to the store: bad URLs, unreachable or refusing servers, corrupt files, newer schemas."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from camfleet.store import Store, StoreError
from camfleet_testing.pgserver import PgServer

pytestmark = pytest.mark.process

SECRET = "Hunter2-db-pass"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (f"mysql://root:{SECRET}@localhost/camfleet", "unsupported database"),
        (f"not a url {SECRET}", "bad database URL"),
        (f"postgresql://u:{SECRET}@host:port/db", "bad database URL"),
        (f"postgresql://u:{SECRET}@[::1/db", "bad database URL"),
        ("sqlite://", "names no file"),
        ("sqlite:///:memory:", "names no file"),
    ],
)
def test_bad_urls(url: str, match: str) -> None:
    with pytest.raises(StoreError, match=match) as err:
        Store.open(url)
    assert SECRET not in str(err.value)


def test_unreachable_server_masks_password() -> None:
    url = f"postgresql://camfleet:{SECRET}@127.0.0.1:{_closed_port()}/camfleet"
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="cannot open database") as err:
        Store.open(url)
    assert time.monotonic() - t0 < 15
    msg = str(err.value)
    assert SECRET not in msg and "***" in msg and "127.0.0.1" in msg
    assert err.value.__cause__ is None
    assert SECRET not in repr(err.value.__context__)


def test_wrong_password_masks_password(pg_server: PgServer, pg_url: str) -> None:
    url = pg_url.replace(pg_server.password, SECRET)
    with pytest.raises(StoreError, match="password authentication failed") as err:
        Store.open(url)
    assert SECRET not in str(err.value) and pg_server.password not in str(err.value)


def test_missing_pg_database(pg_server: PgServer) -> None:
    with pytest.raises(StoreError, match='database "nope" does not exist') as err:
        Store.open(pg_server.url_for("nope"))
    assert pg_server.password not in str(err.value)


def test_corrupt_sqlite_file_is_named_and_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "camfleet.db"
    junk = os.urandom(8192)
    db.write_bytes(junk)
    with pytest.raises(StoreError) as err:
        Store.open(f"sqlite:///{db}")
    assert str(db) in str(err.value) and "not a database" in str(err.value)
    assert hashlib.sha256(db.read_bytes()).digest() == hashlib.sha256(junk).digest()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camfleet.db"]  # no key, no journal made


def test_sqlite_path_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    with pytest.raises(StoreError) as err:
        Store.open(f"sqlite:///{tmp_path / 'db'}")
    assert str(tmp_path / "db") in str(err.value)


def test_sqlite_parent_not_creatable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot create the directory"):
        Store.open(f"sqlite:///{tmp_path / 'file' / 'sub' / 'camfleet.db'}")


def test_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'camfleet.db'}"
    store = Store.open(url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(StoreError, match="newer than this camfleet") as err:
        Store.open(url)
    assert "9999" in str(err.value)
    store = Store.open(url, migrate=False)  # readers of a newer schema are not blocked by it
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "9999"
    finally:
        store.close()


def test_errors_after_open_are_store_errors(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'camfleet.db'}")
    try:
        with store.engine.begin() as conn:
            conn.execute(text("DROP TABLE nodes"))
        with pytest.raises(StoreError, match="no such table"):
            store.nodes()
    finally:
        store.close()


def test_missing_postgres_binaries_are_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMFLEET_PG_BIN", str(tmp_path / "nowhere"))
    with pytest.raises(StoreError, match="initdb and pg_ctl") as err:
        PgServer()
    assert str(tmp_path / "nowhere") in str(err.value)
