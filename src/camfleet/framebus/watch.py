"""Noticing a publisher's death at once, without periodic checks.

One daemon thread per process waits in ``poll()`` on a pidfd for each
publisher that a subscriber of this process follows. When one becomes readable
the publisher has exited: the thread runs the subscriber's callback, which marks
the ring gone and wakes any ``next()`` sleeping on the ring's futex.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import threading
from collections.abc import Callable

from . import _sys


class _DeathWatcher:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: dict[int, tuple[int, Callable[[], None]]] = {}  # token -> (pidfd, cb)
        self._tokens = itertools.count(1)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread: threading.Thread | None = None

    def watch(self, pid: int, on_exit: Callable[[], None]) -> int | None:
        """Call ``on_exit`` once when ``pid`` exits; returns a token, or None if impossible."""
        pidfd = _sys.pidfd_open(pid)
        if pidfd is None:
            return None
        with self._lock:
            token = next(self._tokens)
            self._watches[token] = (pidfd, on_exit)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="camfleet-framebus-watch", daemon=True
                )
                self._thread.start()
        self._kick()
        return token

    def unwatch(self, token: int | None) -> None:
        """Stop watching; safe to call twice or with None."""
        if token is None:
            return
        with self._lock:
            entry = self._watches.pop(token, None)
        if entry is not None:
            os.close(entry[0])
            self._kick()

    def _kick(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            with self._lock:
                by_fd = {fd: token for token, (fd, _cb) in self._watches.items()}
            for fd in by_fd:
                poller.register(fd, select.POLLIN)
            for fd, _ev in poller.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                with self._lock:
                    entry = self._watches.pop(by_fd[fd], None)
                if entry is not None:
                    os.close(entry[0])
                    entry[1]()


_watcher = _DeathWatcher()


def watch_pid(pid: int, on_exit: Callable[[], None]) -> int | None:
    """Call ``on_exit`` (from a background thread) when process ``pid`` exits.

    Returns a token for :func:`unwatch`, or None when the pid cannot be watched
    (not visible in this pid namespace); callers then fall back to checking the
    publisher's lock while they wait.
    """
    return _watcher.watch(pid, on_exit)


def unwatch(token: int | None) -> None:
    """Cancel a :func:`watch_pid` registration."""
    _watcher.unwatch(token)
