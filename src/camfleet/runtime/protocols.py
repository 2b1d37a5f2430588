"""The narrow types the runtime's parts meet at (instead of ``Any``).

Queues are seen only through what the code calls on them. Events, activity
spans and segments do not travel on a queue: camera processes journal them in
the node's outbox (:mod:`camfleet.events`), typed by :mod:`camfleet.vocabulary`.
"""

from __future__ import annotations

from typing import Protocol

from camfleet.config import Config, LogSettings


class ConfigInbox(Protocol):
    """The pipeline process's end of its control queue: new configurations, newest last."""

    def get_nowait(self) -> Config:
        """The next configuration; raises ``queue.Empty`` when there is none."""
        ...


class ConfigOutbox(Protocol):
    """The node's end of a pipeline's control queue."""

    def put(self, obj: Config, /) -> None:
        """Send a configuration to the running pipeline."""


class LogRouting(Protocol):
    """What the node needs of the log router (:class:`camfleet.runtime.logfiles.LogRouter`)."""

    @property
    def address(self) -> str:
        """Where children send their log records."""
        ...

    def update(self, settings: LogSettings) -> None:
        """Use new log settings."""

    def close_camera(self, name: str) -> None:
        """Close the log file of a removed camera."""
