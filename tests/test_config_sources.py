"""Configuration sources (file, fixed, the API's camera overlay) and the config-file watcher."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from camfleet.config import (
    CameraOverlay,
    ConfigError,
    ConfigFileWatcher,
    FileSource,
    FixedSource,
    OverlaySource,
    load_config_text,
)

pytestmark = pytest.mark.unit

BASE = """\
models:
  ssd: {path: models/ssd.tflite, runtime: tflite, input: {width: 300, height: 300}}
detectors: {cpu: {runtime: tflite}}
pipelines: {default: [motion: {}, detect: {model: ssd, detector: cpu}]}
defaults: {pipeline: default, detect: {fps: 5}}
cameras:
"""


def camera(name: str) -> str:
    return f'  {name}: {{sources: [{{url: "synthetic://{name}", roles: [detect]}}]}}\n'


class FakeOverlay:
    """The store's side of the overlay, in memory (what :class:`CameraOverlay` asks of it)."""

    def __init__(self, applied: dict[str, dict[str, Any]] | None = None,
                 deleted: set[str] | None = None) -> None:
        self.applied = applied or {}
        self.deleted = deleted or set()

    def applied_cameras(self) -> dict[str, dict[str, Any]]:
        return dict(self.applied)

    def deleted_cameras(self) -> set[str]:
        return set(self.deleted)


def test_file_source_reads_the_file_again_at_each_load(tmp_path: Path) -> None:
    path = tmp_path / "camfleet.yaml"
    path.write_text(BASE + camera("a"))
    source = FileSource(path)
    assert set(source.load().cameras) == {"a"}
    path.write_text(BASE + camera("a") + camera("b"))
    assert set(source.load().cameras) == {"a", "b"}
    path.write_text(BASE + "  c: {sources: []}\n")
    with pytest.raises(ConfigError):
        source.load()


def test_overlay_source_lays_applied_cameras_over_and_removes_deleted_ones(tmp_path: Path) -> None:
    path = tmp_path / "camfleet.yaml"
    path.write_text(BASE + camera("a") + camera("b"))
    overlay: CameraOverlay = FakeOverlay(
        applied={"c": {"sources": [{"url": "synthetic://c", "roles": ["detect"]}], "enabled": False}},
        deleted={"b"},
    )
    config = OverlaySource(FileSource(path), overlay).load()
    assert set(config.cameras) == {"a", "c"} and config.camera("c").enabled is False
    assert config.camera("c").detect.fps == 5.0  # the file's defaults apply to overlaid cameras too


def test_an_empty_overlay_gives_the_base_config_itself() -> None:
    config = load_config_text(BASE + camera("a"))
    assert OverlaySource(FixedSource(config), FakeOverlay()).load() is config
    assert FixedSource(config).load() is config


def test_an_overlaid_camera_that_no_longer_fits_the_file_is_a_config_error() -> None:
    config = load_config_text(BASE + camera("a"))
    overlay = FakeOverlay(applied={"x": {"sources": [{"url": "synthetic://x", "roles": ["detect"]}],
                                         "pipeline": "gone"}})
    with pytest.raises(ConfigError, match="gone"):
        OverlaySource(FixedSource(config), overlay).load()


class Changes:
    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    def wait(self, timeout: float = 5.0) -> bool:
        hit = self.event.wait(timeout)
        self.event.clear()
        return hit


def test_watcher_sees_saves_in_place_and_by_rename_but_not_unchanged_content(tmp_path: Path) -> None:
    path = tmp_path / "camfleet.yaml"
    path.write_text(BASE + camera("a"))
    changes = Changes()
    watcher = ConfigFileWatcher(path, changes, settle_s=0.2, recheck_s=30)
    watcher.start()
    try:
        time.sleep(0.3)  # let the watch begin
        path.write_text(BASE + camera("b"))  # saved in place
        assert changes.wait()
        tmp = tmp_path / ".camfleet.yaml.tmp"
        tmp.write_text(BASE + camera("c"))
        os.replace(tmp, path)  # saved the way many editors do
        assert changes.wait()
        path.write_text(BASE + camera("c"))  # same bytes again
        (tmp_path / "other.yaml").write_text("x: 1\n")  # another file in the directory
        assert not changes.wait(1.0)
        assert changes.count == 2
        path.write_text(BASE + camera("d"))
        watcher.mark_seen()  # applied by an explicit reload before the change settled
        assert not changes.wait(1.0)
    finally:
        t = time.monotonic()
        watcher.stop()
        assert time.monotonic() - t < 2.0


def test_watcher_rechecks_without_notifications(tmp_path: Path) -> None:
    path = tmp_path / "camfleet.yaml"
    path.write_text(BASE + camera("a"))
    changes = Changes()
    watcher = ConfigFileWatcher(path, changes, settle_s=0.2, recheck_s=0.3)
    watcher._ours = lambda *_: False  # type: ignore[method-assign]  # as if the file system said nothing
    watcher.start()
    try:
        path.write_text(BASE + camera("b"))
        assert changes.wait()
    finally:
        watcher.stop()
