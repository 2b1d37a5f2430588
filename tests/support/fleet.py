"""Helpers for the fleet's tests: the CLI's fleet commands as subprocesses, their state, bounded waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")
ROOT = Path(__file__).resolve().parents[2]


def cli_env() -> dict[str, str]:
    """The environment for ``python -m camfleet.cli`` from this checkout, unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "testing" / "src"),
                                         env.get("PYTHONPATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn_cli(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``camfleet ARGS`` with its output in ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "camfleet.cli", *args], stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=cli_env())


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout``; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def wait_for(what: str, probe: Callable[[], _T | None], timeout: float, interval: float = 0.05) -> _T:
    """Poll ``probe`` until it returns something truthy; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def read_state(path: Path) -> dict[str, Any] | None:
    """A coordinator's state file, or None when not written yet."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def seed_capacity(data_dir: Path) -> None:
    """Write the capacity cache an agent measures at its first start (for tests not about the benchmark)."""
    from camfleet import __version__
    from camfleet.cluster.capacity import Capacity, _model_sha256

    folder = data_dir / "capacity"
    folder.mkdir(parents=True, exist_ok=True)
    seeded = Capacity(decode_pixels_per_s=5e7, inferences_per_s=20.0, camfleet_version=__version__,
                      model_sha256=_model_sha256(), measured_at=time.time(), notes=["seeded by a test"])
    (folder / "capacity.json").write_text(json.dumps(seeded.to_json()))
