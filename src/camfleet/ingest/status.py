"""The reconnect state machine's states and the counters kept about them."""

from __future__ import annotations

import collections
import enum
import time
from dataclasses import dataclass


class IngestState(enum.Enum):
    """Where an ingest loop is: connecting → streaming → stalled → backoff → … → stopped."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass(frozen=True)
class IngestStatus:
    """A snapshot for status displays; times in seconds, rates in frames/s.

    ``frames`` counts frames published to the ring (after the frame-rate limit),
    ``decoded`` every frame decoded from the stream. ``corrupt_frames`` counts
    decoded frames FFmpeg flagged as decoded from damaged data (published with
    ``FrameFlags.CORRUPT``), ``rejected_packets`` packets the decoder refused;
    both together are the damaged frames behind ``corrupt_fps`` (per second,
    last 10 s) and ``corrupt_per_min`` (last 60 s). ``degraded`` is
    ``"corrupt stream: N frames/min"`` while that is above the source's
    threshold, else None (the state stays ``streaming``).
    """

    state: IngestState
    seconds_in_state: float
    reconnects_last_hour: int
    stalls_last_hour: int
    last_error: str | None
    last_error_kind: str | None
    frames: int
    packets: int
    decode_fps: float
    width: int
    height: int
    codec: str
    decoded: int = 0
    corrupt_frames: int = 0
    rejected_packets: int = 0
    corrupt_fps: float = 0.0
    corrupt_per_min: int = 0
    degraded: str | None = None


class StateTracker:
    """Records transitions and counts reconnects and stalls over a sliding hour."""

    WINDOW_S = 3600.0

    def __init__(self) -> None:
        self.state = IngestState.STOPPED
        self.since = time.monotonic()
        self.last_error: str | None = None
        self.last_error_kind: str | None = None
        self._reconnects: collections.deque[float] = collections.deque()
        self._stalls: collections.deque[float] = collections.deque()
        self.history: list[tuple[float, IngestState]] = []

    def enter(self, state: IngestState) -> bool:
        """Move to ``state``; returns False when already there."""
        if state == self.state:
            return False
        now = time.monotonic()
        if state == IngestState.STALLED:
            self._stalls.append(now)
        if state == IngestState.CONNECTING and self.state in (IngestState.BACKOFF, IngestState.STALLED):
            self._reconnects.append(now)
        self.state = state
        self.since = now
        self.history.append((now, state))
        del self.history[:-100]
        return True

    def error(self, kind: str, message: str) -> None:
        """Remember the last error (already masked)."""
        self.last_error_kind = kind
        self.last_error = message

    def _count(self, events: collections.deque[float]) -> int:
        cutoff = time.monotonic() - self.WINDOW_S
        while events and events[0] < cutoff:
            events.popleft()
        return len(events)

    @property
    def reconnects_last_hour(self) -> int:
        """Reconnect attempts in the last hour."""
        return self._count(self._reconnects)

    @property
    def stalls_last_hour(self) -> int:
        """Stalls detected in the last hour."""
        return self._count(self._stalls)

    @property
    def seconds_in_state(self) -> float:
        """Seconds since the last transition."""
        return time.monotonic() - self.since
