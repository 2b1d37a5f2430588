"""The node's claim on its data directory: the pid file, the status file's home, stale rings."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import psutil

from camfleet.framebus.inspect import list_rings

log = logging.getLogger("camfleet.runtime")


class NodeAlreadyRunning(RuntimeError):
    """Another live node uses the same data directory."""


class RunDir:
    """``<data_dir>/run`` (owner-only): the pid file that claims the data directory, and the status file."""

    def __init__(self, data_path: Path) -> None:
        self.data_path = data_path
        self.path = data_path / "run"

    @property
    def pid_file(self) -> Path:
        """The pid of the node that holds the data directory."""
        return self.path / "camfleet.pid"

    @property
    def status_path(self) -> Path:
        """The status snapshot ``camfleet status`` reads, rewritten every second."""
        return self.path / "status.json"

    def claim(self) -> None:
        """Create the directories and write our pid; :class:`NodeAlreadyRunning` when a live node holds it."""
        self.data_path.mkdir(parents=True, exist_ok=True)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(self.pid_file.read_text().strip())
            if pid != os.getpid() and psutil.pid_exists(pid):
                with contextlib.suppress(psutil.Error):
                    if "camfleet" in " ".join(psutil.Process(pid).cmdline()):
                        raise NodeAlreadyRunning(
                            f"a camfleet node is already running with data directory {self.data_path} "
                            f"(pid {pid}); stop it first (kill {pid})"
                        )
            log.info("reclaiming what a previous node (pid %d) left behind", pid)
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.chmod(0o600)
        os.replace(tmp, self.pid_file)
        reclaim_rings()

    def release(self) -> None:
        """Remove the pid file and the status file (the node stopped)."""
        for path in (self.status_path, self.pid_file):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def reclaim_rings() -> None:
    """Remove ring segments whose publisher is dead (left by a node killed with -9)."""
    for info in list_rings():
        if not info.publisher_alive:
            with contextlib.suppress(FileNotFoundError):
                Path(info.path).unlink()
                log.info("removed stale ring %s (%s)", info.key, info.kind)
