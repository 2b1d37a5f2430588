"""``camfleet run`` with a lost ``secret.key`` or the database down: the file's cameras run regardless."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from camfleet.store import Store
from camfleet_testing.pgserver import FAST_SETTINGS, PgServer

pytestmark = pytest.mark.e2e

CAMFLEET = [sys.executable, "-m", "camfleet.cli"]
SECRET = "s3cretPw"


def _config(data_dir: Path, database: str = "") -> str:
    db = f"storage: {{database: '{database}'}}\n" if database else ""
    return f"""\
data_dir: {data_dir}
pipelines: {{p: [motion: {{}}]}}
defaults: {{pipeline: p, detect: {{width: 160, height: 120, fps: 5}}}}
runtime: {{heartbeat_timeout: 3, startup_grace: 20, backoff_initial: 0.2, backoff_max: 2}}
api: {{enabled: false, port: 0}}
{db}cameras:
  filecam: {{sources: [{{url: "synthetic://filecam?width=160&height=120&fps=5", roles: [detect]}}]}}
"""


def _wait_healthy(proc: subprocess.Popen[str], data_dir: Path, cameras: set[str],
                  timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    snap: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            snap = json.loads((data_dir / "run" / "status.json").read_text())
        except (OSError, ValueError):
            snap = None
        if snap and snap["pid"] == proc.pid and {
                n for n, c in snap["cameras"].items() if c["state"] == "healthy"} == cameras:
            return snap
        time.sleep(0.2)  # another process writes the file: nothing to wait on
    raise AssertionError(f"cameras not healthy within {timeout} s: {snap}")


def _run_until_healthy(config: Path, data_dir: Path, cameras: set[str]) -> tuple[dict[str, Any], str]:
    proc = subprocess.Popen([*CAMFLEET, "run", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        snap = _wait_healthy(proc, data_dir, cameras, 90)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=15)
    return snap, output


def test_lost_key_file_cameras_run_and_the_unreadable_one_is_named(tmp_path: Path, shm_dir: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAMFLEET_SECRET_KEY", raising=False)
    data = tmp_path / "data"
    config = tmp_path / "camfleet.yaml"
    config.write_text(_config(data))
    key = data / "secret.key"
    store = Store.open(f"sqlite:///{data / 'camfleet.db'}", secret_key_path=key)
    try:
        store.set_applied_cameras({
            "locked": {"sources": [{"url": f"rtsp://admin:{SECRET}@127.0.0.1:9/s", "roles": ["detect"]}]},
            "plain": {"sources": [{"url": "synthetic://plain?width=160&height=120&fps=5",
                                   "roles": ["detect"]}]},
        })
    finally:
        store.close()
    key.unlink()
    snap, output = _run_until_healthy(config, data, {"filecam", "plain"})
    assert "locked" not in snap["cameras"]
    errors = " ".join(snap["reload"]["errors"])
    assert "'locked'" in errors and "forget-cameras" in errors, snap["reload"]
    assert "'locked'" in output and "Traceback" not in output, output
    assert snap["reload"]["at"] > 0  # `camfleet status` prints the errors of a change with a time
    assert not key.exists()  # no new key over the encrypted row
    logs = " ".join(p.read_text(errors="replace") for p in data.rglob("*.log"))
    assert SECRET not in output + errors + logs


def test_database_down_at_start_file_cameras_run(tmp_path: Path, shm_dir: Path) -> None:
    # a PostgreSQL database camfleet has used (migrated, a camera applied), then the server is stopped
    with PgServer(FAST_SETTINGS) as server:
        url = server.create_database("outage")
        store = Store.open(url, secret_key_path=tmp_path / "data" / "secret.key")
        try:
            store.set_applied_cameras({"apicam": {"sources": [{"url": "synthetic://apicam",
                                                                "roles": ["detect"]}]}})
        finally:
            store.close()
    data = tmp_path / "data"
    config = tmp_path / "camfleet.yaml"
    config.write_text(_config(data, url))
    snap, output = _run_until_healthy(config, data, {"filecam"})
    errors = " ".join(snap["reload"]["errors"])
    assert "database unavailable" in errors and "database unavailable" in output, (errors, output)
    assert "Traceback" not in output
    assert server.password not in output + errors
