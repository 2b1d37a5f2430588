"""How big a camera's packet ring is: the stream's measured byte rate times the seconds its readers need.

The packet ring is a wrap-around buffer in shared memory: once it has wrapped, every byte of
it is resident, whatever the stream needs. A fixed 8 MiB holds 33 s of a 2 Mbit/s 720p
camera, where a recorder reading in real time needs a few seconds of slack (and a new reader
the newest keyframe). So the ingest loop measures the stream's rate over its first
:data:`PROBE_S` seconds (stream time) and sizes the ring to hold :data:`RING_SECONDS` seconds
of it with :data:`HEADROOM` for bursts (scene changes, keyframes), at least
:data:`MIN_CAPACITY` bytes and at most the configured capacity (which a faster stream keeps,
as before). It goes on measuring, :data:`REMEASURE_S` seconds at a time: a stream that became
faster (a busy scene, a camera reconfigured) and needs :data:`GROW_FACTOR` times the ring or more
gets a bigger one, created at a keyframe (readers subscribe again there). A ring never shrinks.
"""

from __future__ import annotations

from typing import Final

PROBE_S: Final = 2.0
"""Seconds of stream time measured before the ring is created (a keyframe interval, usually)."""
PROBE_WALL_S: Final = 4.0
"""Wall-clock seconds after which the measurement ends anyway (a stream without timestamps)."""
RING_SECONDS: Final = 8.0
"""Seconds of the stream the ring holds: how far a reader may fall behind before it loses packets."""
HEADROOM: Final = 1.5
"""Factor over the measured rate for bursts (a busy scene, keyframes) the first seconds did not show."""
REMEASURE_S: Final = 10.0
"""Seconds of stream time per later measurement (whether the ring must grow)."""
GROW_FACTOR: Final = HEADROOM
"""A ring is re-created bigger when a later measurement needs this many times its capacity: when,
at the stream's rate now, it would hold less than :data:`RING_SECONDS` (so a first measurement a
little low, an encoder ramping up, costs no re-creation)."""
MIN_CAPACITY: Final = 1024 * 1024
"""The smallest ring, bytes (a quiet low-resolution stream still gets a few keyframes' room)."""
PACKETS_HELD: Final = 16
"""The ring holds at least this many of the largest packet measured (a keyframe: the framebus refuses
a packet over a quarter of the ring)."""
ROUND: Final = 64 * 1024


def ring_capacity(bytes_per_s: float | None, most: int, seconds: float = RING_SECONDS,
                  largest: int = 0) -> int:
    """Bytes of a packet ring for a stream of ``bytes_per_s`` (None: unknown, ``most``), within limits.

    ``bytes_per_s`` x ``seconds`` x :data:`HEADROOM`, and :data:`PACKETS_HELD` x ``largest``
    (bytes of the largest packet seen), rounded up to 64 KiB, at least :data:`MIN_CAPACITY`
    and at most ``most`` bytes.
    """
    if bytes_per_s is None or bytes_per_s <= 0:
        return most
    want = max(int(bytes_per_s * seconds * HEADROOM), PACKETS_HELD * largest)
    want = (want + ROUND - 1) // ROUND * ROUND
    return max(min(want, most), min(MIN_CAPACITY, most))


class RateProbe:
    """Measures a stream's byte rate over its first :data:`PROBE_S` seconds of stream time.

    ``add`` each packet's size with its time in seconds (stream time; None when it has none)
    and the wall clock; :attr:`done` once the packets span :data:`PROBE_S` seconds of stream
    time, or :data:`PROBE_WALL_S` seconds passed on the wall clock.
    """

    def __init__(self, probe_s: float = PROBE_S, wall_s: float = PROBE_WALL_S) -> None:
        self.probe_s = probe_s
        self.wall_s = wall_s
        self.bytes = 0
        self.packets = 0
        self.largest = 0
        self._first: float | None = None  # stream time of the first packet with one
        self._last: float | None = None
        self._wall0: float | None = None
        self._wall: float = 0.0

    def add(self, size: int, t: float | None, wall: float) -> None:
        """Count one packet of ``size`` bytes at stream time ``t`` s (None: none), seen at ``wall`` s."""
        self.bytes += size
        self.packets += 1
        self.largest = max(self.largest, size)
        if self._wall0 is None:
            self._wall0 = wall
        self._wall = wall
        if t is not None:
            if self._first is None:
                self._first = t
            self._last = t if self._last is None else max(self._last, t)

    @property
    def span_s(self) -> float:
        """Seconds the packets measured so far cover: stream time, else the wall clock."""
        if self._first is not None and self._last is not None and self._last > self._first:
            return self._last - self._first
        return self._wall - self._wall0 if self._wall0 is not None else 0.0

    @property
    def done(self) -> bool:
        """Whether enough of the stream was measured."""
        if self._wall0 is None:
            return False
        return self.span_s >= self.probe_s or self._wall - self._wall0 >= self.wall_s

    def bytes_per_s(self) -> float | None:
        """The measured rate, bytes per second (None before two timed packets)."""
        span = self.span_s
        if span <= 0 or self.packets < 2:
            return None
        # the packets cover span_s plus one frame interval: n packets, n-1 intervals
        return self.bytes * (self.packets - 1) / self.packets / span
