"""A lost key: cameras it hides are named, the rest run, no new key over encrypted rows, forget-cameras.

The node-level half (``camfleet run`` with a lost key or the database down) is in
``test_run_store_outage.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from camfleet.cli.storage import app as storage_app
from camfleet.config import FixedSource, OverlaySource, load_config_text
from camfleet.store import Store, StoreError
from camfleet.store.credentials import UnreadableCameras
from camfleet.store.overlay import StoreOverlay

pytestmark = pytest.mark.process

SECRET = "s3cretPw"

FILE = """\
pipelines: {p: [motion: {}]}
defaults: {pipeline: p, detect: {fps: 5}}
cameras:
  filecam: {sources: [{url: "synthetic://filecam", roles: [detect]}]}
  door: {sources: [{url: "synthetic://door", roles: [detect]}]}
"""


def _applied() -> dict[str, dict[str, Any]]:
    return {
        "door": {"sources": [{"url": f"rtsp://admin:{SECRET}@10.0.0.9/s", "roles": ["detect"]}]},
        "yard": {"sources": [{"url": f"http://cam/snap?user=admin&password={SECRET}", "roles": ["detect"]}]},
        "plain": {"sources": [{"url": "synthetic://plain", "roles": ["detect"]}]},
    }


def _lose_key(db_url: str, key_path: Path) -> None:
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        store.set_applied_cameras(_applied(), deleted=["gone"])
    finally:
        store.close()
    key_path.unlink()


def test_lost_key_names_the_unreadable_cameras_and_keeps_the_rest(db_url: str, key_path: Path) -> None:
    _lose_key(db_url, key_path)
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        with pytest.raises(UnreadableCameras) as err:
            store.applied_cameras()
        assert err.value.names == ["door", "yard"]
        assert [r.name for r in err.value.readable] == ["plain"]
        msg = str(err.value)
        assert "'door'" in msg and "'yard'" in msg and "forget-cameras" in msg and SECRET not in msg
        # the overlay: the file's cameras run (door from the file), plus the readable applied one
        source = OverlaySource(FixedSource(load_config_text(FILE)), StoreOverlay(store))
        cfg = source.load()
        assert set(cfg.cameras) == {"filecam", "door", "plain"}
        assert cfg.cameras["door"].sources[0].url == "synthetic://door"
        assert len(source.problems) == 1 and "'door'" in source.problems[0] and "'yard'" in source.problems[0]
        assert SECRET not in repr(source.problems)
        assert not key_path.exists()  # reading never makes a key
    finally:
        store.close()


def test_no_new_key_while_encrypted_rows_exist(db_url: str, key_path: Path) -> None:
    _lose_key(db_url, key_path)
    store = Store.open(db_url, secret_key_path=key_path)
    try:
        cams = _applied()
        with pytest.raises(StoreError) as err:
            store.set_applied_cameras(cams)  # would have made a new key and orphaned the old rows
        msg = str(err.value)
        assert "missing" in msg and "forget-cameras" in msg and "'door'" in msg and SECRET not in msg
        assert not key_path.exists()
        assert store.unreadable_cameras() == ["door", "yard"]
        assert store.forget_cameras(["door", "yard"]) == 2
        store.set_applied_cameras(cams)  # no encrypted row left: a new key is made
        assert key_path.exists()
        assert store.applied_cameras() == cams
    finally:
        store.close()


def test_store_outage_keeps_the_file_cameras_and_the_last_overlay(tmp_path: Path, key_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db' / 'camfleet.db'}", secret_key_path=key_path)
    store.set_applied_cameras({"plain": _applied()["plain"]}, deleted=["door"])
    source = OverlaySource(FixedSource(load_config_text(FILE)), StoreOverlay(store))
    assert set(source.load().cameras) == {"filecam", "plain"} and source.problems == []
    (tmp_path / "db" / "camfleet.db").unlink()
    os.chmod(tmp_path / "db", 0o500)  # the database cannot be reopened: an outage
    try:
        store.close()
        cfg = source.load()
        assert set(cfg.cameras) == {"filecam", "plain"}  # the last overlay read, not the file alone
        assert source.problems and "not loaded" in source.problems[0]
    finally:
        os.chmod(tmp_path / "db", 0o700)


def test_key_file_readable_by_others_warns(tmp_path: Path, key_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'camfleet.db'}", secret_key_path=key_path)
    try:
        store.set_applied_cameras({"door": _applied()["door"]})
    finally:
        store.close()
    key_path.chmod(0o644)
    caplog.set_level(logging.WARNING, "camfleet.store")
    store = Store.open(f"sqlite:///{tmp_path / 'camfleet.db'}", secret_key_path=key_path)
    try:
        assert store.applied_cameras() == {"door": _applied()["door"]}
    finally:
        store.close()
    assert "can be read by other users" in caplog.text and "chmod 600" in caplog.text
    assert SECRET not in caplog.text


def test_forget_cameras_command(tmp_path: Path, key_path: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "camfleet.yaml"
    config.write_text(f"data_dir: {data}\n")
    _lose_key(f"sqlite:///{data / 'camfleet.db'}", data / "secret.key")
    runner = CliRunner()
    r = runner.invoke(storage_app, ["forget-cameras", str(config)], input="n\n")
    assert r.exit_code == 1 and "door, yard" in r.output and "nothing dropped" in r.output, r.output
    r = runner.invoke(storage_app, ["forget-cameras", str(config)], input="y\n")
    assert r.exit_code == 0 and "forgot 2 camera(s)" in r.output, r.output
    assert SECRET not in r.output
    r = runner.invoke(storage_app, ["forget-cameras", str(config)])
    assert r.exit_code == 0 and "nothing to forget" in r.output, r.output
    store = Store.open(f"sqlite:///{data / 'camfleet.db'}", secret_key_path=data / "secret.key")
    try:
        assert store.applied_cameras() == {"plain": _applied()["plain"]}
    finally:
        store.close()
    r = runner.invoke(storage_app, ["forget-cameras", "--all", "--yes", str(config)])
    assert r.exit_code == 0 and "forgot 1 camera(s)" in r.output and "plain" in r.output, r.output
    assert not (data / "secret.key").exists()
