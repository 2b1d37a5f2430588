"""Ctrl-C in a terminal: SIGINT to the whole process group stops ``camfleet run`` quietly and in order.

A terminal sends SIGINT to every process of the foreground group at once, so
each process may see it before the node does: the node's children must leave
the stop to the node, and the node must not take their exits for failures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .support.runtime_helpers import camera_yaml, config_text

pytestmark = pytest.mark.e2e

RECORD = "    record: {enabled: true, segment_seconds: 2}\n"
STOP_TIMEOUT_S = 10.0
"""The configuration's ``runtime.stop_timeout`` (the default); the whole stop must fit in it."""
NOISE = ("restarting", "exited with code", "Broken pipe", "Traceback", "KeyboardInterrupt", "killing it")


def _all_healthy(data_dir: Path, pid: int, cameras: set[str]) -> bool:
    try:
        snap = json.loads((data_dir / "run" / "status.json").read_text())
    except (OSError, ValueError):
        return False
    healthy = {n for n, c in snap["cameras"].items() if c["state"] == "healthy"}
    return bool(snap["pid"] == pid and healthy == cameras)


@pytest.mark.parametrize("when", ["starting", "running"])
def test_sigint_to_the_process_group_stops_quietly(tmp_path: Path, shm_dir: Path, when: str) -> None:
    config = tmp_path / "camfleet.yaml"
    cameras = camera_yaml("a", 0, extra=RECORD) + camera_yaml("b", 1, extra=RECORD)
    config.write_text(config_text(tmp_path, cameras))
    # its own process group, as a shell gives a foreground job: the terminal's Ctrl-C reaches every process
    proc = subprocess.Popen([sys.executable, "-m", "camfleet.cli", "run", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    detector_serves = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "serving model" in line:
                detector_serves.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if when == "starting":  # camera processes and the forkserver are being started
            assert detector_serves.wait(90), "".join(lines)
            time.sleep(0.3)
        else:  # pipelines mid-request to the detector when the signal lands
            deadline = time.monotonic() + 90
            while not _all_healthy(tmp_path, proc.pid, {"a", "b"}):
                assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
                time.sleep(0.2)  # the node writes the file from another process: nothing to wait on
            time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(STOP_TIMEOUT_S + 5) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        reader.join(5)
    output = "".join(lines)
    assert "camfleet: stopped." in output, output
    camera_logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    for noise in NOISE:
        assert noise not in output, f"{noise!r} in the output of a Ctrl-C stop:\n{output}"
        assert noise not in camera_logs, f"{noise!r} in the camera logs of a Ctrl-C stop:\n{camera_logs}"
