"""The node's fleet lease, shared with its camera processes through one small owner-only file.

A node run by a fleet agent may run cameras only while it holds a lease (its
heartbeats are acknowledged). The agent writes the lease's deadline into
``<data_dir>/run/lease``; every camera process maps that file and checks it
every :data:`CHECK_S` seconds in a thread of its own, so a camera stops by
itself when the deadline passes even while the agent is frozen (``SIGSTOP``
freezes the agent, not its children) or cannot reach NATS.

The deadline is one aligned little-endian 64-bit integer: nanoseconds of
:func:`lease_clock_ns` (``CLOCK_BOOTTIME``: system-wide, never set back, and
counting while the machine is suspended, unlike ``CLOCK_MONOTONIC``); 0 means
no lease. An aligned 8-byte store is one write on x86-64 and arm64, so a
reader never sees half a deadline. Without a fleet (``camfleet run``) there is
no file and nothing checks it.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from camfleet.framebus.segment import create_private_file

__all__ = ["CHECK_S", "EXIT_FENCED", "FENCE_EXIT_S", "LEASE_FILE", "LeaseReader", "NodeLease",
           "lease_clock_ns", "watch_lease"]

log = logging.getLogger("camfleet.runtime")

LEASE_FILE = "lease"
"""The lease file's name in the node's run directory."""

CHECK_S = 0.1
"""Seconds between two checks of the lease in a camera process."""

FENCE_EXIT_S = 1.0
"""Seconds a fenced camera process gets to stop cleanly before it leaves at once."""

EXIT_FENCED = 101
"""Exit code of a camera process that stopped because the node's lease lapsed."""

_SIZE = 8
_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


def lease_clock_ns() -> int:
    """Now on the lease's clock (``CLOCK_BOOTTIME``, else ``CLOCK_MONOTONIC``), in nanoseconds."""
    return time.clock_gettime_ns(_CLOCK)


def _map(fd: int, writable: bool) -> tuple[mmap.mmap, memoryview]:
    access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
    mm = mmap.mmap(fd, _SIZE, access=access)
    return mm, memoryview(mm).cast("q")


class NodeLease:
    """The node's side: creates the file (no lease) and writes the deadline the agent gives it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd = create_private_file(path, _SIZE)  # a fresh owner-only file, never a planted one
        try:
            self._mm, self._view = _map(fd, writable=True)
        finally:
            os.close(fd)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def deadline_ns(self) -> int:
        """The deadline in force (:func:`lease_clock_ns` nanoseconds; 0: no lease, or closed)."""
        with self._lock:
            return 0 if self._closed else int(self._view[0])

    def hold_until(self, deadline_ns: int) -> None:
        """Camera processes may run until ``deadline_ns`` (:func:`lease_clock_ns` nanoseconds).

        Ignored once closed (an agent still beating while its node stops).
        """
        with self._lock:
            if not self._closed:
                self._view[0] = deadline_ns

    def revoke(self) -> None:
        """No lease: camera processes stop, and are not started, until :meth:`hold_until` again."""
        self.hold_until(0)

    def closed(self, now_ns: int | None = None) -> str | None:
        """Why camera processes may not run now (None: the lease holds)."""
        deadline = self.deadline_ns
        now = lease_clock_ns() if now_ns is None else now_ns
        if deadline == 0:
            return "fenced: the node holds no fleet lease"
        if now >= deadline:
            return f"fenced: the node's fleet lease lapsed {(now - deadline) / 1e9:.1f} s ago"
        return None

    def close(self) -> None:
        """Unmap and remove the file (the node stops)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._view.release()
            with contextlib.suppress(BufferError):
                self._mm.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class LeaseReader:
    """A camera process's side: reads the deadline (an 8-byte load, no system call)."""

    def __init__(self, path: str | Path) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self._mm, self._view = _map(fd, writable=False)
        finally:
            os.close(fd)

    def lapsed_s(self, now_ns: int | None = None) -> float | None:
        """Seconds since the lease lapsed (0.0 when there is none), or None while it holds."""
        deadline = int(self._view[0])
        now = lease_clock_ns() if now_ns is None else now_ns
        if deadline == 0:
            return 0.0
        return (now - deadline) / 1e9 if now >= deadline else None


def watch_lease(path: str, stop: threading.Event, fenced: threading.Event, name: str,
                leave: Callable[[int], None] = os._exit) -> threading.Thread:
    """Check the lease at ``path`` every :data:`CHECK_S` s in a daemon thread until ``stop``.

    When it lapses: log, set ``fenced`` and ``stop`` (a clean stop), and
    ``leave(EXIT_FENCED)`` if the process is still there :data:`FENCE_EXIT_S`
    seconds later (a loop stuck in a blocking call). A lease file that cannot
    be read counts as no lease. ``name`` names the process in the log.
    """

    def run() -> None:
        try:
            reader: LeaseReader | None = LeaseReader(path)
        except (OSError, ValueError) as exc:
            log.error("%s: the node's lease file %s cannot be read (%s): stopping", name, path, exc)
            reader = None
        while True:
            lapsed = 0.0 if reader is None else reader.lapsed_s()
            if lapsed is not None:
                break
            if stop.wait(CHECK_S):
                return
        log.warning("%s: fenced: the node's fleet lease lapsed %.1f s ago; stopping", name, lapsed)
        fenced.set()
        stop.set()
        time.sleep(FENCE_EXIT_S)
        log.warning("%s: fenced: not stopped within %.1f s; leaving now", name, FENCE_EXIT_S)
        leave(EXIT_FENCED)

    thread = threading.Thread(target=run, name="lease-watch", daemon=True)
    thread.start()
    return thread
