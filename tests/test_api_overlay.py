"""Cameras applied or deleted through the API survive a restart: the overlay on the file's cameras."""

from __future__ import annotations

from pathlib import Path

import pytest

from camfleet.api.cameras import applied_after
from camfleet.config import load_config_text
from camfleet.config.sources import camera_dicts, overlay_cameras
from camfleet.store import Store

from .support.runtime_helpers import camera_yaml, config_text

pytestmark = pytest.mark.unit


def _apply_staged(store: Store) -> None:
    applied, deleted = applied_after(store, store.staged_cameras())
    store.set_applied_cameras(applied, deleted=deleted)
    store.discard_staged()


def test_a_file_camera_deleted_through_the_api_stays_deleted_until_added_again(tmp_path: Path) -> None:
    config = load_config_text(config_text(tmp_path, camera_yaml("a", 0) + camera_yaml("b", 1)))
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        store.stage_camera("b", None)
        _apply_staged(store)
        assert store.deleted_cameras() == {"b"}
        assert set(overlay_cameras(config, store).cameras) == {"a"}  # the next start, or a file reload
        b = camera_dicts(config)["b"]
        b["enabled"] = False
        store.stage_camera("b", b)
        _apply_staged(store)
        assert store.deleted_cameras() == set()
        overlaid = overlay_cameras(config, store)
        assert set(overlaid.cameras) == {"a", "b"} and overlaid.camera("b").enabled is False
    finally:
        store.close()
