"""Noticing that a configuration file was saved: a thread on :func:`watchfiles.watch`.

The file's directory is watched rather than the file, because editors and
deployment tools often save by writing a new file and renaming it over the old
one, which ends a watch on the file itself. A change counts only when the
file's bytes differ from the last ones seen (a ``touch`` or a rewrite with the
same content applies nothing), and only once the file has been quiet for
``settle_s``: a save in several writes is applied once, and an explicit
``camfleet reload`` right after a save applies it first and reports what
changed (its caller calls :meth:`ConfigFileWatcher.mark_seen`, so the watcher
does not apply the same content a second time). The watch also compares the
bytes every ``recheck_s``, for file systems that send no notifications
(network mounts, some container volumes).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import watchfiles

__all__ = ["ConfigFileWatcher", "fingerprint"]

log = logging.getLogger("camfleet.config")


def fingerprint(path: Path) -> str:
    """A hash of the file's bytes ("" when it cannot be read)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


class ConfigFileWatcher:
    """Calls ``on_change`` (from its own thread) each time the content of ``path`` changes."""

    _TICK_MS = 100  # how often the watch wakes to see whether a change has settled

    def __init__(self, path: Path, on_change: Callable[[], None], *, settle_s: float = 1.0,
                 recheck_s: float = 5.0) -> None:
        self.path = path.absolute()
        self._on_change = on_change
        self._settle_s = settle_s
        self._recheck_s = recheck_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen = fingerprint(self.path)
        self._thread = threading.Thread(target=self._run, name="camfleet-config-watch", daemon=True)

    def start(self) -> None:
        """Start watching (the content at construction time is the one already applied)."""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and wait up to ``timeout`` seconds for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def mark_seen(self) -> None:
        """Record the file's current content as applied (a reload was asked for some other way)."""
        current = fingerprint(self.path)
        if current:
            with self._lock:
                self._seen = current

    def _ours(self, _change: watchfiles.Change, path: str) -> bool:
        return Path(path).name == self.path.name

    def _run(self) -> None:
        changed_at: float | None = None  # when the last change not yet checked was seen
        checked_at = time.monotonic()
        try:
            for changes in watchfiles.watch(
                self.path.parent, watch_filter=self._ours, debounce=self._TICK_MS, step=50,
                stop_event=self._stop, rust_timeout=self._TICK_MS, yield_on_timeout=True,
                raise_interrupt=False, recursive=False,
            ):
                now = time.monotonic()
                if changes:
                    changed_at = now
                if (changed_at is not None and now - changed_at >= self._settle_s) or (
                        changed_at is None and now - checked_at >= self._recheck_s):
                    changed_at, checked_at = None, now
                    self._check()
        except Exception:  # the watch itself failed (e.g. the directory went away): keep polling
            log.warning("watching %s failed; checking it every %.1f s instead", self.path, self._recheck_s,
                        exc_info=True)
            while not self._stop.wait(self._recheck_s):
                self._check()

    def _check(self) -> None:
        current = fingerprint(self.path)
        with self._lock:
            if current in ("", self._seen):  # unchanged, or gone for a moment (mid-rename): nothing to apply
                return
            self._seen = current
        try:
            self._on_change()
        except Exception:  # a failing callback must not end the watch
            log.exception("applying the change of %s failed", self.path)
