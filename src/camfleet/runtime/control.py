"""What the layers above the runtime (API, cluster agent, CLI) may ask of a running node.

:class:`NodeControl` is the whole surface: a status snapshot, the configuration
in force, applying a new configuration (the reconciler makes the processes
match it), and a stream of events and status changes. Everything crossing it
is plain JSON-ready data, so the same surface can be served over HTTP or NATS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from camfleet.config import Config

HealthState = Literal["starting", "healthy", "degraded", "unresponsive", "restarting", "failed", "stopped",
                      "ended"]
"""The states of a process and of a camera (a camera takes its worst process's state).

``ended``: a file source without ``loop`` played to its end; the camera's
processes finished and are not restarted (a configuration change starts it again).
"""

ProcessKind = Literal["ingest", "pipeline", "recorder", "detector"]


@dataclass
class ProcessStatus:
    """One supervised process, as of the last supervisor pass.

    Rates are per second over the last few seconds; ``cpu_percent`` is of one
    core (200 means two cores busy); ``rss_mb`` is resident memory in MiB;
    ``ended_at`` when the process finished for good (state ``ended``), in
    seconds since the epoch.
    """

    name: str
    kind: ProcessKind
    state: HealthState
    reason: str = ""
    pid: int | None = None
    restarts: int = 0
    last_error: str | None = None
    heartbeat_age_s: float | None = None
    cpu_percent: float = 0.0
    rss_mb: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    ended_at: float | None = None


@dataclass
class CameraStatus:
    """One camera: its state (its worst process's), the key rates, and its processes.

    ``decode_fps`` frames decoded by ingest (the stream's rate; the frame
    ring gets those left after the frame-rate limit), ``processed_fps`` frames the
    pipeline analysed, ``skipped_fps`` frames the pipeline did not get to,
    ``detector_rps`` detector requests per second, ``inference_ms`` the mean
    inference time of its detector requests, ``corrupt_fps`` frames per second
    decoded from damaged data (plus packets the decoder refused).
    ``ended_at``: when its file source ended (state ``ended``), seconds since the epoch.
    """

    name: str
    state: HealthState
    reason: str = ""
    enabled: bool = True
    last_error: str | None = None
    restarts: int = 0
    decode_fps: float = 0.0
    processed_fps: float = 0.0
    skipped_fps: float = 0.0
    detector_rps: float = 0.0
    inference_ms: float = 0.0
    corrupt_fps: float = 0.0
    queue_depth: int = 0
    cpu_percent: float = 0.0
    rss_mb: float = 0.0
    processes: dict[str, ProcessStatus] = field(default_factory=dict)
    ended_at: float | None = None


@dataclass
class ReloadResult:
    """The outcome of the last configuration change (``generation`` counts changes applied)."""

    generation: int = 0
    ok: bool = True
    at: float = 0.0
    errors: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)


@dataclass
class NodeStatus:
    """A snapshot of the whole node: cameras, detectors, the last reload, the event outbox.

    ``outbox`` holds the outbox pump's counters since the node started
    (``delivered``, ``skipped``, ``retries``, ``dropped``, ``trimmed``) and
    ``lag``, the entries the slowest sink has still to take. ``sinks`` has one row per
    outbox sink (the store, MQTT, each webhook): ``lag``, ``down_s`` (seconds unreachable),
    ``attempts``, ``error``, and the sink's own delivery counters.
    """

    node: str
    pid: int
    started_at: float
    at: float
    cameras: dict[str, CameraStatus] = field(default_factory=dict)
    detectors: dict[str, ProcessStatus] = field(default_factory=dict)
    reload: ReloadResult = field(default_factory=ReloadResult)
    outbox: dict[str, int] = field(default_factory=dict)
    sinks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The snapshot as JSON-ready data."""
        return asdict(self)


Listener = Callable[[dict[str, Any]], None]
"""Receives ``{"type": "event", ...}`` and ``{"type": "status", ...}`` messages (from any thread)."""


class NodeControl(Protocol):
    """The operations a running node offers to the API, the cluster agent and the CLI."""

    def status(self) -> NodeStatus:
        """A snapshot of every camera, process and detector."""
        ...

    def current_config(self) -> Config:
        """The configuration the node runs now."""
        ...

    def apply_config(self, config: Config, *, base: Config | None = None) -> ReloadResult:
        """Make the running processes match ``config``; touches only the cameras that changed.

        With ``base`` (the configuration ``config`` was built from), nothing
        changes when another change was applied since.
        """
        ...

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for each event update and status change; returns the unsubscribe function."""
        ...
