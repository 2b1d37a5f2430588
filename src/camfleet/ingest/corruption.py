"""Frames decoded from damaged data: counted, rated, and judged against a threshold.

FFmpeg's decoders conceal damage (a flipped byte becomes a smeared block, not
an exception), so a damaged stream decodes "fine" unless its frames are
asked: FFmpeg marks each such frame (``decode_error_flags`` /
``AV_FRAME_FLAG_CORRUPT``, PyAV's ``frame.is_corrupt``). A packet the decoder
refuses outright is a frame lost to damage too. Both count here as damaged
frames; rates are over wall-clock time, in one-second buckets.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

RATE_WINDOW_S = 10
"""Seconds over which the damaged-frame rate (frames/s) is measured."""
MINUTE_S = 60
"""Seconds over which the degraded threshold (frames/min) is judged."""


class CorruptionMeter:
    """Counts damaged frames and says when a camera is degraded by them.

    Safe to use from several threads (the ingest loop records, status readers read).

    Args:
        degraded_per_min: damaged frames in the last minute above which the
            stream is degraded; 0 never reports it.
        clock: monotonic seconds (a test may pass its own).
    """

    def __init__(self, degraded_per_min: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.degraded_per_min = degraded_per_min
        self._clock = clock
        self.corrupt_frames = 0
        """Decoded frames flagged as decoded from damaged data (total)."""
        self.rejected_packets = 0
        """Packets the decoder refused (total)."""
        # (whole second, damaged frames in it), oldest first, at most MINUTE_S entries
        self._buckets: collections.deque[list[int]] = collections.deque()
        self._lock = threading.Lock()

    def _add(self) -> None:
        second = int(self._clock())
        with self._lock:
            if self._buckets and self._buckets[-1][0] == second:
                self._buckets[-1][1] += 1
            else:
                self._buckets.append([second, 1])
                self._trim(second)

    def _trim(self, second: int) -> None:
        while self._buckets and self._buckets[0][0] <= second - MINUTE_S:
            self._buckets.popleft()

    def _since(self, seconds: int) -> int:
        now = int(self._clock())
        with self._lock:
            self._trim(now)
            return sum(n for s, n in self._buckets if s > now - seconds)

    def corrupt_frame(self) -> None:
        """Record one decoded frame flagged corrupt."""
        self.corrupt_frames += 1
        self._add()

    def rejected_packet(self) -> None:
        """Record one packet the decoder refused."""
        self.rejected_packets += 1
        self._add()

    @property
    def per_second(self) -> float:
        """Damaged frames per second over the last :data:`RATE_WINDOW_S` seconds."""
        return self._since(RATE_WINDOW_S) / RATE_WINDOW_S

    @property
    def per_minute(self) -> int:
        """Damaged frames in the last minute."""
        return self._since(MINUTE_S)

    def degraded(self) -> str | None:
        """``"corrupt stream: N frames/min"`` while over the threshold, else None."""
        if self.degraded_per_min <= 0:
            return None
        n = self.per_minute
        return f"corrupt stream: {n} frames/min" if n > self.degraded_per_min else None
