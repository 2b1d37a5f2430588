"""Local files: a running node creates them owner-only; the heartbeat table never follows a planted link."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from camfleet.runtime.heartbeat import HeartbeatTable, table_path

pytestmark = pytest.mark.e2e

CAMFLEET = [sys.executable, "-m", "camfleet.cli"]


def _config(data_dir: Path) -> str:
    return f"""\
data_dir: {data_dir}
pipelines: {{p: [motion: {{}}]}}
defaults: {{pipeline: p, detect: {{width: 160, height: 120, fps: 5}}}}
runtime: {{heartbeat_timeout: 3, startup_grace: 20, backoff_initial: 0.2, backoff_max: 2}}
api: {{enabled: false, port: 0}}
cameras:
  cam: {{sources: [{{url: "synthetic://cam?width=160&height=120&fps=10", roles: [detect, record]}}],
         record: {{enabled: true, segment_seconds: 1, pre_capture: 1, post_capture: 1}}}}
"""


def test_a_running_node_creates_everything_owner_only(tmp_path: Path, shm_dir: Path) -> None:
    data = tmp_path / "data"
    config = tmp_path / "camfleet.yaml"
    config.write_text(_config(data))
    # a permissive umask, as a desktop session has: the node must not rely on it
    proc = subprocess.Popen([*CAMFLEET, "run", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, umask=0o022, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 90
        while not any(data.rglob("*.mp4")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no recording segment within 90 s"
            time.sleep(0.3)  # the recorder writes the file: nothing to wait on
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=15)
    assert proc.returncode == 0, output
    paths = [data, *data.rglob("*")]
    names = {p.name for p in paths}
    assert "camfleet.db" in names and any(n.endswith(".mp4") for n in names) and "logs" in names, names
    loose = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in paths
             if stat.S_IMODE(p.lstat().st_mode) & 0o077 and not p.is_symlink()}
    assert loose == {}, "readable by other users"


def test_heartbeat_table_replaces_a_planted_symlink_instead_of_following_it(tmp_path: Path,
                                                                            shm_dir: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    path = table_path("planted")
    path.symlink_to(victim)
    table = HeartbeatTable("planted")
    try:
        assert victim.read_bytes() == b"precious"  # not truncated, not written
        assert not path.is_symlink() and path.is_file()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        slot = table.allocate()
        assert table.read(slot).pid == 0
    finally:
        table.close()
    assert victim.read_bytes() == b"precious"
