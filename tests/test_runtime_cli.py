"""``camfleet run`` as a user runs it: status, reload, logs, SIGTERM, and kill -9 of the supervisor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from .support.runtime_helpers import camera_yaml, config_text

pytestmark = pytest.mark.e2e

CAMFLEET = [sys.executable, "-m", "camfleet.cli"]


def _status(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / "run" / "status.json").read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def _wait_healthy(proc: subprocess.Popen[str], data_dir: Path, cameras: set[str],
                  timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        snap = _status(data_dir)
        if snap and snap["pid"] == proc.pid and {
                n for n, c in snap["cameras"].items() if c["state"] == "healthy"} == cameras:
            return snap
        time.sleep(0.2)  # another process writes the file: nothing to wait on
    raise AssertionError(f"cameras not healthy within {timeout} s: {_status(data_dir)}")


def _child_pids(snap: dict[str, Any]) -> set[int]:
    pids = {p["pid"] for c in snap["cameras"].values() for p in c["processes"].values() if p["pid"]}
    return pids | {d["pid"] for d in snap["detectors"].values() if d["pid"]}


def _gone(pids: set[int]) -> bool:
    return all(not psutil.pid_exists(p) or psutil.Process(p).status() == "zombie" for p in pids)


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*CAMFLEET, "run", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CAMFLEET, *args], capture_output=True, text=True, timeout=60, check=False)


def test_run_status_reload_logs_and_sigterm(tmp_path: Path, shm_dir: Path) -> None:
    config = tmp_path / "camfleet.yaml"
    cams = camera_yaml("a", 0) + camera_yaml("b", 1)
    config.write_text(config_text(tmp_path, cams))
    proc = _start(config)
    try:
        snap = _wait_healthy(proc, tmp_path, {"a", "b"}, 90)
        pids = _child_pids(snap)
        # camfleet status: a table row per camera
        out = _run("status", str(config))
        assert out.returncode == 0, out.stderr
        rows = {line.split()[0]: line.split()[1] for line in out.stdout.splitlines()
                if line[:2] in ("a ", "b ")}
        assert rows == {"a": "healthy", "b": "healthy"}, out.stdout
        assert "DETECTOR" in out.stdout and "ingest" in out.stdout
        # an invalid file: `camfleet reload` says where, the node keeps running what it had
        config.write_text(config_text(tmp_path, cams).replace("fps: 5}}", "fps: -5}}"))
        out = _run("reload", str(config))
        assert out.returncode == 1 and "defaults.detect.fps" in out.stderr, out.stderr
        # a valid change: applied, only b touched
        config.write_text(config_text(tmp_path, cams.replace("seed=1&", "seed=5&")))
        out = _run("reload", str(config))
        assert out.returncode == 0 and "b/ingest" in out.stdout, (out.stdout, out.stderr)
        snap = _wait_healthy(proc, tmp_path, {"a", "b"}, 30)
        assert snap["cameras"]["a"]["processes"]["ingest"]["pid"] in pids
        assert snap["cameras"]["b"]["processes"]["ingest"]["pid"] not in pids
        pids |= _child_pids(snap)
        # saving the file is enough: the node watches it (zones only: updated in place)
        generation = snap["reload"]["generation"]
        zones = "{door: {points: [[0, 0], [0.5, 0], [0.5, 1]]}}"
        moved_b = camera_yaml("b", 1).replace("seed=1&", "seed=5&")
        config.write_text(config_text(tmp_path, camera_yaml("a", 0, zones=zones) + moved_b))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            snap = _status(tmp_path) or snap
            if snap["reload"]["generation"] > generation:
                break
            time.sleep(0.2)  # the node rewrites its status file; nothing to wait on
        result = snap["reload"]
        assert result["generation"] == generation + 1 and result["updated"] == ["a"], result
        assert _child_pids(snap) <= pids
        # per-camera logs, tagged with camera and process
        out = _run("logs", "a", "--config", str(config), "-n", "200")
        assert out.returncode == 0, out.stderr
        assert "[a/ingest" in out.stdout and "[b/" not in out.stdout, out.stdout
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=15)
    print(f"SIGTERM to exit: {took:.2f} s")
    assert proc.returncode == 0, output
    assert took < 10
    assert _gone(pids)
    assert list(shm_dir.iterdir()) == []
    assert not (tmp_path / "run" / "camfleet.pid").exists()


def test_kill_9_of_the_supervisor_takes_its_children_and_the_next_start_reclaims(
        tmp_path: Path, shm_dir: Path) -> None:
    config = tmp_path / "camfleet.yaml"
    config.write_text(config_text(tmp_path, camera_yaml("a", 0)))
    proc = _start(config)
    try:
        pids = _child_pids(_wait_healthy(proc, tmp_path, {"a"}, 90))
        proc.kill()
        proc.communicate(timeout=10)
        deadline = time.monotonic() + 10
        while not _gone(pids) and time.monotonic() < deadline:
            time.sleep(0.1)  # the kernel delivers the parent-death signal; nothing to wait on here
        assert _gone(pids), "children outlived their supervisor"
        assert list(shm_dir.iterdir()), "expected the killed node's segments to be left behind"
        proc = _start(config)  # reclaims the pid file and the dead rings
        _wait_healthy(proc, tmp_path, {"a"}, 90)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, output
        assert "reclaiming what a previous node" in output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=15)
    assert list(shm_dir.iterdir()) == []
