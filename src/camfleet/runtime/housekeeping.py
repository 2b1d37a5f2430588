"""Housekeeping of a node with a store: the storage check at start, then recording retention periodically."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from camfleet.config import Config

if TYPE_CHECKING:
    from camfleet.store import Store

log = logging.getLogger("camfleet.runtime")

RETENTION_PERIOD_S = 60.0
"""Seconds between retention passes over the recordings."""


class Housekeeping:
    """A thread that repairs the recordings index once, then applies retention and the storage floor.

    ``config`` returns the configuration in force (it changes on reload);
    :meth:`run` returns when ``stop`` is set.
    """

    def __init__(self, store: Store, config: Callable[[], Config], stop: threading.Event,
                 *, period_s: float = RETENTION_PERIOD_S) -> None:
        self._store = store
        self._config = config
        self._stop = stop
        self.period_s = period_s

    def run(self) -> None:
        """The thread's loop: :meth:`check_storage`, then :meth:`retain` every :attr:`period_s` seconds."""
        self.check_storage()
        while not self._stop.wait(self.period_s):
            self.retain()

    def check_storage(self) -> None:
        """Make the index match the recordings on disk (a recorder killed between rename and report)."""
        from camfleet.recording.check import check_storage  # noqa: PLC0415 - only with a store

        recordings = self._config().recordings_path
        if not recordings.exists():
            return
        try:
            checked = check_storage(self._store, recordings, repair=True)
            log.info("storage check at start: %d segment(s), %d missing file(s) removed from the index, "
                     "%d unindexed file(s) indexed", checked.rows, checked.rows_deleted,
                     len(checked.files_indexed))
        except Exception:
            log.exception("storage check failed")

    def retain(self) -> None:
        """One retention pass (nothing when no camera records)."""
        from camfleet.events import journal_path  # noqa: PLC0415 - only with a store
        from camfleet.recording.retention import RetentionManager, journal_open_spans  # noqa: PLC0415

        config = self._config()
        if not any(cam.record.enabled for cam in config.cameras.values()):
            return
        try:
            open_spans = journal_open_spans(journal_path(config.data_path))  # motion going on now
            report = RetentionManager(self._store, config, open_spans=open_spans).run_once()
            if report.deleted:
                log.info("retention: deleted %d segment(s), %.1f MiB", len(report.deleted),
                         report.bytes_freed / 2**20)
        except Exception:
            log.exception("retention pass failed")
