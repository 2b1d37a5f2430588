"""Cameras (applied and staged) and their credentials at rest, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import text

from camfleet.store import Store, StoreError
from camfleet.store.credentials import KEY_ENV

pytestmark = pytest.mark.process

PASSWORD = "S3cr3t-pa55:w@rd/x"  # characters that must be percent-encoded in a URL
ENCODED = "S3cr3t-pa55%3Aw%40rd%2Fx"


def _cams() -> dict[str, dict[str, Any]]:
    return {
        "front": {
            "sources": [
                {"url": f"rtsp://admin:{ENCODED}@10.0.0.5:554/stream1?channel=1#x", "roles": ["detect"]},
                {"url": "rtsp://viewer:${FRONT_PASSWORD}@10.0.0.5:554/stream2", "roles": ["record"]},
                {"url": "synthetic://scene"},
            ],
            "detect": {"fps": 5},
        },
        "back": {"sources": [{"url": "rtsps://[fe80::1]:322/live"}], "enabled": False},
    }


def _raw(store: Store, table: str) -> str:
    with store.engine.connect() as conn:
        return repr(conn.execute(text(f"SELECT * FROM {table}")).all())


def test_applied_cameras_round_trip_encrypted(store: Store, key_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.INFO)
    try:
        assert store.applied_cameras() == {}
        store.set_applied_cameras(_cams())
        assert store.applied_cameras() == _cams()
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    raw = _raw(store, "cameras")
    assert "10.0.0.5" in raw and "admin" in raw  # the row is there, readable apart from the password
    assert ENCODED not in raw and PASSWORD not in raw and "pa55" not in raw
    assert "${FRONT_PASSWORD}" in raw  # env references are stored as they are
    assert "pa55" not in caplog.text
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    rows = store.camera_rows()
    assert [r.name for r in rows] == ["back", "front"] and rows[1].config == _cams()["front"]


def test_set_applied_cameras_replaces_the_whole_set(store: Store) -> None:
    store.set_applied_cameras(_cams())
    store.set_applied_cameras({"back": {"sources": []}, "side": {"sources": [{"url": "rtsp://u:p@h/s"}]}})
    assert store.applied_cameras() == {"back": {"sources": []}, "side": {"sources": [{"url": "rtsp://u:p@h/s"}]}}
    store.set_applied_cameras({})
    assert store.applied_cameras() == {}


def test_staged_edits(store: Store) -> None:
    store.set_applied_cameras(_cams())
    store.stage_camera("front", None)
    store.stage_camera("new", {"sources": [{"url": f"rtsp://admin:{ENCODED}@10.0.0.7/s"}]})
    store.stage_camera("back", {"sources": [], "enabled": True})
    store.stage_camera("new", {"sources": [{"url": f"rtsp://root:{ENCODED}@10.0.0.8/s"}]})  # edit again
    assert store.staged_cameras() == {
        "back": {"sources": [], "enabled": True},
        "front": None,
        "new": {"sources": [{"url": f"rtsp://root:{ENCODED}@10.0.0.8/s"}]},
    }
    raw = _raw(store, "staged_cameras")
    assert "pa55" not in raw and "10.0.0.8" in raw
    assert store.applied_cameras() == _cams()  # staging does not touch the applied set
    store.discard_staged()
    assert store.staged_cameras() == {}


def test_wrong_key_is_a_clear_error(db_url: str, key_path: Path, tmp_path: Path) -> None:
    store = Store.open(db_url, secret_key_path=key_path)
    store.set_applied_cameras(_cams())
    store.stage_camera("new", {"sources": [{"url": f"rtsp://a:{ENCODED}@h/s"}]})
    store.close()
    other = tmp_path / "other.key"
    other.write_bytes(Fernet.generate_key())
    wrong = Store.open(db_url, secret_key_path=other)
    try:
        for read in (wrong.applied_cameras, wrong.staged_cameras):
            with pytest.raises(StoreError) as err:
                read()
            msg = str(err.value)
            assert str(other) in msg and "wrong key" in msg and "pa55" not in msg
            assert err.value.__cause__ is None or "pa55" not in repr(err.value.__cause__)
    finally:
        wrong.close()


def test_missing_key_file_is_a_clear_error(db_url: str, key_path: Path) -> None:
    store = Store.open(db_url, secret_key_path=key_path)
    store.set_applied_cameras(_cams())
    key_path.unlink()
    store.close()
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        with pytest.raises(StoreError, match="missing") as err:
            store.applied_cameras()
        assert str(key_path) in str(err.value)
        assert not key_path.exists()  # reading never makes a new key
    finally:
        store.close()


def test_corrupt_key_file(db_url: str, key_path: Path) -> None:
    key_path.parent.mkdir(parents=True)
    key_path.write_text("not a key\n")
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        with pytest.raises(StoreError, match="does not hold a valid key") as err:
            store.set_applied_cameras(_cams())
        assert str(key_path) in str(err.value)
        assert store.applied_cameras() == {}  # nothing written
        assert key_path.read_text() == "not a key\n"  # nothing overwritten
    finally:
        store.close()


def test_key_from_environment(db_url: str, key_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, Fernet.generate_key().decode())
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        store.set_applied_cameras(_cams())
        assert store.applied_cameras() == _cams()
        assert not key_path.exists()
    finally:
        store.close()
    monkeypatch.setenv(KEY_ENV, "short")
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        with pytest.raises(StoreError, match=KEY_ENV):
            store.applied_cameras()
    finally:
        store.close()


def test_no_key_configured(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    store = Store.open(pg_url)  # PostgreSQL: no file to put a key next to
    try:
        store.set_applied_cameras({"back": _cams()["back"]})  # no password: no key needed
        with pytest.raises(StoreError, match="no secret key"):
            store.set_applied_cameras(_cams())
        assert store.applied_cameras() == {"back": _cams()["back"]}  # the old set is intact
    finally:
        store.close()


def test_sqlite_key_defaults_next_to_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    db = tmp_path / "d" / "camfleet.db"
    store = Store.open(f"sqlite:///{db}")
    try:
        store.set_applied_cameras(_cams())
    finally:
        store.close()
    key = tmp_path / "d" / "camfleet.db.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert PASSWORD.encode() not in db.read_bytes() and b"pa55" not in db.read_bytes()
    store = Store.open(f"sqlite:///{db}")
    try:
        assert store.applied_cameras() == _cams()
        assert "pa55" not in repr(store)
    finally:
        store.close()


def test_camera_row_repr_masks_passwords(store: Store) -> None:
    store.set_applied_cameras(_cams())
    rows = store.camera_rows()
    assert "pa55" in repr(rows[1].config)  # the config itself is clear (internal use)
    assert "pa55" not in repr(rows) and "front" in repr(rows)
