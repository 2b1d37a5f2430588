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
    """``node.status()`` with a short time-to-live; one caller computes, the others reuse it."""

    def __init__(self, node: StatusSource, ttl: float = 0.5) -> None:
        self.node = node
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = -1e9
        self._status: NodeStatus | None = None
        self._data: dict[str, Any] = {}
        self._body = b"{}"

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._at < self.ttl and self._status is not None:
            return
        with self._lock:
            if time.monotonic() - self._at < self.ttl and self._status is not None:
                return
            status = self.node.status()
            data = status.to_json()
            self._body = json.dumps(data, separators=(",", ":"), default=str).encode()
            self._status, self._data, self._at = status, data, time.monotonic()

    def invalidate(self) -> None:
        """Make the next read compute a fresh snapshot."""
        self._at = -1e9

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
