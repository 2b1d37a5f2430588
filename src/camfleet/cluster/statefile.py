"""A coordinator's state in a file: role, term, leader and members, rewritten when they change.

For people and tools on the coordinator's machine (and the tests) until the
fleet's HTTP API exists; written atomically (a reader never sees half a file),
owner-only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from .coordinator import Coordinator

__all__ = ["StateFile"]

log = logging.getLogger("camfleet.cluster")

CHECK_S = 0.1


class StateFile:
    """Rewrites ``path`` with :meth:`Coordinator.snapshot` whenever it changes (checked every 0.1 s).

    The lease's revision changes with every renewal, so a leader's file is rewritten twice a second.
    """

    def __init__(self, coordinator: Coordinator, path: Path) -> None:
        self.coordinator = coordinator
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-file", daemon=True)
        self._last: dict[str, Any] | None = None

    def start(self) -> None:
        """Start rewriting in a thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop, after a last write (no longer leader)."""
        self._stop.set()
        self._thread.join(2.0)
        self._write(self._state() | {"is_leader": False, "term": 0, "stopped": True})

    def _state(self) -> dict[str, Any]:
        snap = self.coordinator.snapshot()
        return {
            "coordinator_id": snap.coordinator_id,
            "is_leader": snap.is_leader,
            "term": snap.term,
            "revision": snap.revision,
            "leader": dataclasses.asdict(snap.leader) if snap.leader else None,
            "members": {k: {"state": m.state, "hostname": m.record.hostname if m.record else None}
                        for k, m in sorted(snap.members.items())},
            "pid": os.getpid(),
            "server": snap.server,
        }

    def _write(self, state: dict[str, Any]) -> None:
        if state == self._last:
            return
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)
        except OSError as exc:
            log.warning("state file %s: %s", self.path, exc)
            return
        self._last = state

    def _run(self) -> None:
        while not self._stop.wait(CHECK_S):
            self._write(self._state())
