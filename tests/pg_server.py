"""Fixtures of the store tests: a real PostgreSQL server started once per session, a fresh
database per test, and a Store parametrized over SQLite and PostgreSQL.

Import the fixtures into a test module (no pytest_plugins)::

    from tests.pg_server import db_url_fixture, key_path_fixture, pg_server_fixture, pg_url_fixture, \
        store_fixture  # noqa: F401

then ask for ``pg_server`` (the session's :class:`PgServer`), ``pg_url`` (URL of a new, empty
database), ``db_url`` (SQLite file or new PG database, both params), ``key_path`` (where the
camera-password key lives; $CAMFLEET_SECRET_KEY unset) or ``store`` (an open, migrated Store).
Missing PostgreSQL binaries FAIL the tests that need them, with the reason.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camfleet.store import Store
from camfleet.store.credentials import KEY_ENV
from camfleet.store.errors import StoreError
from camfleet_testing.pgserver import FAST_SETTINGS, PgServer

BACKENDS = ["sqlite", "postgresql"]
_db_counter = itertools.count(1)


# Each test module that imports the fixture gets its own copy of it (pytest registers fixtures per
# module), so the server itself is shared here: started by the first user, stopped by the last one
# at the end of the session.
_shared: dict[str, Any] = {"server": None, "users": 0}
_shared_lock = threading.Lock()


@pytest.fixture(scope="session", name="pg_server")
def pg_server_fixture() -> Iterator[PgServer]:
    with _shared_lock:
        if _shared["server"] is None:
            try:
                server = PgServer(FAST_SETTINGS)
                server.start()
            except StoreError as exc:
                pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
            _shared["server"] = server
        _shared["users"] += 1
        server = _shared["server"]
    try:
        yield server
    finally:
        with _shared_lock:
            _shared["users"] -= 1
            if _shared["users"] == 0:
                _shared["server"] = None
                server.stop()


@pytest.fixture(name="pg_url")
def pg_url_fixture(pg_server: PgServer) -> str:
    return pg_server.create_database(f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(name="db_url", params=BACKENDS)
def db_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'camfleet.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(name="key_path")
def key_path_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(KEY_ENV, raising=False)
    return tmp_path / "keys" / "secret.key"


@pytest.fixture(name="store")
def store_fixture(db_url: str, key_path: Path) -> Iterator[Store]:
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        yield store
    finally:
        store.close()
