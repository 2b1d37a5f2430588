"""The node's status, computed at most once per ``ttl`` and shared by every reader."""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Protocol

from camfleet.runtime.control import NodeStatus


class StatusSource(Protocol):
    """What the cache reads: a node (:class:`~camfleet.runtime.control.NodeControl`) or the fleet."""

    def status(self) -> NodeStatus:
        """A snapshot of every camera, process and detector."""
        ...


class StatusCache:
    """``node.status()`` with a short time-to-live; one caller computes, the others reuse it.

    A stale snapshot being recomputed is still served to the other readers meanwhile (it is
    at most ``ttl`` plus one computation old), so a fleet's status, which costs milliseconds
    per hundred cameras, never queues every request behind one computation. Only the very
    first read, and reads after :meth:`invalidate`, wait for a fresh one.
    """

    def __init__(self, node: StatusSource, ttl: float = 0.5) -> None:
        self.node = node
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -1e9
        self._status: NodeStatus | None = None
        self._data: dict[str, Any] = {}
        self._body = b"{}"
        self._wanted = 0  # invalidations asked for
        self._have = 0  # invalidations the current snapshot was computed after

    def _fresh(self) -> bool:
        return (self._status is not None and self._have == self._wanted
                and time.monotonic() - self._at < self.ttl)

    def _refresh(self) -> None:
        if self._fresh():
            return
        if self._status is not None and self._have == self._wanted:
            # stale by age only: whoever is computing serves everyone next; meanwhile the old one
            if not self._lock.acquire(blocking=False):
                return
        else:
            self._lock.acquire()
        try:
            if not self._fresh():
                wanted = self._wanted
                status = self.node.status()
                data = status.to_json()
                self._body = json.dumps(data, separators=(",", ":"), default=str).encode()
                self._status, self._data, self._at, self._have = status, data, time.monotonic(), wanted
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        """Make the next read wait for a fresh snapshot (e.g. after an apply)."""
        self._wanted += 1

    def get(self) -> NodeStatus:
        """The status snapshot (at most ``ttl`` seconds old)."""
        self._refresh()
        assert self._status is not None
        return self._status

    def json(self) -> dict[str, Any]:
        """The snapshot as JSON-ready data (shared: do not modify)."""
        self._refresh()
        return self._data

    def ws_message(self) -> str:
        """The snapshot as a WebSocket message ``{"type": "snapshot", "status": ...}``."""
        self._refresh()
        return '{"type":"snapshot","status":' + self._body.decode() + "}"

    def body(self) -> bytes:
        """The snapshot encoded as JSON."""
        self._refresh()
        return self._body
