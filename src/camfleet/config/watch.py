"""Noticing that a configuration file was saved: a thread on :func:`watchfiles.watch`.

The file's directory is watched rather than the file, because editors and
deployment tools often save by writing a new file and renaming it over the old
one, which ends a watch on the file itself. A change counts only when the
file's bytes differ from the last ones seen (a ``touch`` or a rewrite with the
same content applies nothing). The watch also wakes every ``recheck_s`` to
compare the bytes, for file systems that send no notifications (network
mounts, some container volumes).
"""

from __future__ import annotations

import hashlib
import logging
import threading
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

    def __init__(self, path: Path, on_change: Callable[[], None], *, debounce_ms: int = 200,
                 recheck_s: float = 2.0) -> None:
        self.path = path.absolute()
        self._on_change = on_change
        self._debounce_ms = debounce_ms
        self._recheck_ms = max(100, int(recheck_s * 1000))
        self._stop = threading.Event()
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

    def _ours(self, _change: watchfiles.Change, path: str) -> bool:
        return Path(path).name == self.path.name

    def _run(self) -> None:
        try:
            for _changes in watchfiles.watch(
                self.path.parent, watch_filter=self._ours, debounce=self._debounce_ms, step=50,
                stop_event=self._stop, rust_timeout=self._recheck_ms, yield_on_timeout=True,
                raise_interrupt=False, recursive=False,
            ):
                self._check()
        except Exception:  # the watch itself failed (e.g. the directory went away): keep polling
            log.warning("watching %s failed; checking it every %.1f s instead", self.path,
                        self._recheck_ms / 1000, exc_info=True)
            while not self._stop.wait(self._recheck_ms / 1000):
                self._check()

    def _check(self) -> None:
        current = fingerprint(self.path)
        if current in ("", self._seen):  # unchanged, or gone for a moment (mid-rename): nothing to apply
            return
        self._seen = current
        try:
            self._on_change()
        except Exception:  # a failing callback must not end the watch
            log.exception("applying the change of %s failed", self.path)
