"""The narrow types the runtime's parts meet at (instead of ``Any``).

Messages between camera processes and the node are JSON-ready dicts
(:data:`Message`); queues are seen only through what the code calls on them.
"""

from __future__ import annotations

from typing import Any, Protocol

from camfleet.config import Config, LogSettings

Message = dict[str, Any]
"""A JSON-ready message a camera process sends the node (``{"kind": "event"|"activity"|"segment", ...}``)."""


class MessageSink(Protocol):
    """Where a camera process puts its messages (the producer end of the node's event path)."""

    def put(self, obj: Message, /) -> None:
        """Hand over one message."""


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
