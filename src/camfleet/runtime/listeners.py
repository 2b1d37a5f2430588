"""Listener fan-out: every event update and camera state change, to every subscriber."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from .control import Listener

log = logging.getLogger("camfleet.runtime")


class Listeners:
    """The node's subscribers; :meth:`notify` calls each, and one that raises does not stop the others.

    Thread-safe: listeners may be added and removed while messages are sent from other threads.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def add(self, listener: Listener) -> Callable[[], None]:
        """Subscribe ``listener``; returns the function that unsubscribes it."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return remove

    def notify(self, message: dict[str, Any]) -> None:
        """Call every listener with ``message`` (from the caller's thread)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(message)
            except Exception:
                log.exception("a status/event listener failed")
