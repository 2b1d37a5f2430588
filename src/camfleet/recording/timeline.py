"""Packet timestamps → wall-clock time, and gap detection.

A run of packets without a gap shares one *anchor*: the wall-clock capture time
of its first keyframe and that keyframe's timestamp. Every later packet's time
is ``anchor_wall + (ts - anchor_ts) * time_base``, so consecutive segments of a
run are exactly contiguous (one ends at the timestamp of the keyframe the next
begins with). A gap -- a timestamp that goes backwards or jumps, or stream
time drifting away from the wall clock (a stall the timestamps do not show) --
ends the run.
"""

from __future__ import annotations

from fractions import Fraction

from camfleet.framebus import Packet


class Timeline:
    """Maps one run's packet timestamps (``time_base`` units) to epoch seconds.

    ``max_gap`` (seconds) is the largest timestamp step or clock drift that
    is still one continuous stream.
    """

    def __init__(self, time_base: Fraction, max_gap: float) -> None:
        self.time_base = time_base
        self.max_gap = max_gap
        self._anchor: tuple[float, int] | None = None
        self.last_ts: int | None = None
        self.frame_step = 0

    @staticmethod
    def ts(packet: Packet) -> int | None:
        """The packet's decode-order timestamp (dts, else pts), or None."""
        return packet.dts if packet.dts is not None else packet.pts

    @property
    def anchored(self) -> bool:
        """True once a run has begun."""
        return self._anchor is not None

    def anchor(self, packet: Packet, ts: int) -> None:
        """Begin a run at ``packet`` (a keyframe) whose timestamp is ``ts``."""
        self._anchor = (packet.capture_ns / 1e9, ts)
        self.last_ts = ts

    def reset(self) -> None:
        """End the run (after a gap)."""
        self._anchor = None
        self.last_ts = None

    def wall(self, ts: int) -> float:
        """Epoch seconds of timestamp ``ts`` in the current run."""
        assert self._anchor is not None
        wall, base = self._anchor
        return wall + float((ts - base) * self.time_base)

    def drift(self, packet: Packet, ts: int) -> float:
        """Capture time minus mapped time of ``packet``, seconds (positive: stream time lags)."""
        return packet.capture_ns / 1e9 - self.wall(ts)

    def is_gap(self, packet: Packet, ts: int) -> str | None:
        """Why ``packet`` cannot continue the run (a reason), or None if it can."""
        if self._anchor is None or self.last_ts is None:
            return None
        step = float((ts - self.last_ts) * self.time_base)
        if step <= 0:
            return f"timestamp went back or repeated ({step:+.3f} s)"
        if step > self.max_gap:
            return f"timestamp jumped {step:.3f} s"
        drift = self.drift(packet, ts)
        if abs(drift) > self.max_gap:
            return f"stream time drifted {drift:+.3f} s from the wall clock"
        return None

    def advance(self, packet: Packet, ts: int) -> None:
        """Record ``packet`` as the run's latest (updates the frame step estimate)."""
        if self.last_ts is not None and ts > self.last_ts:
            self.frame_step = ts - self.last_ts
        if packet.duration > 0:
            self.frame_step = packet.duration
        self.last_ts = ts
