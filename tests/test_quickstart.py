"""The README's main job: `camfleet run` on its embedded default, as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_camfleet_run_embedded_default_serves_ui_api_events_and_recordings(
        tmp_path: Path, shm_dir: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "camfleet.cli", "run", "--cameras", "2", "--port", "0",
         "--data-dir", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: list[str] = []
    url_seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "web UI and API:" in line:
                url_seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert url_seen.wait(120), "".join(lines)
        url = re.search(r"web UI and API: (http://127\.0\.0\.1:\d+)", "".join(lines))
        assert url, "".join(lines)
        with httpx.Client(base_url=url.group(1), timeout=10) as client:
            page = client.get("/")
            assert page.status_code == 200 and "<html" in page.text.lower()
            deadline = time.monotonic() + 90
            events: list[dict[str, object]] = []
            segments: list[dict[str, object]] = []
            healthy: set[str] = set()
            while time.monotonic() < deadline and not (events and segments and len(healthy) == 2):
                status = client.get("/api/status").json()
                healthy = {n for n, c in status["cameras"].items() if c["state"] == "healthy"}
                events = client.get("/api/events").json()["items"]
                segments = client.get("/api/recordings").json()
                time.sleep(1.0)  # the node works in other processes; nothing to wait on
            assert healthy == {"cam1", "cam2"}, status
            assert events, "no event within 90 s"
            first = events[-1]
            assert first["camera"] in ("cam1", "cam2") and first["label"] in ("person", "cat", "motorcycle")
            assert first["top_score"] > 0.5
            assert segments, "no recording segment within 90 s"
            frame = client.get("/api/cameras/cam1/frame.jpg")
            assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
            assert "camfleet_camera" in client.get("/metrics").text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(5)
    output = "".join(lines)
    assert "camfleet: stopped." in output
    assert (data / "camfleet.db").exists() and (data / "logs" / "cam1.log").exists()
    assert list((data / "snapshots").rglob("*.jpg"))
    assert list(shm_dir.iterdir()) == []
