"""The agent's side of fencing: the lease its heartbeats earn, as a pure state machine.

A beat acknowledged by the store proves the node was alive when it *sent*
it; the coordinators count the node lost only ``heartbeat_ttl_s + grace_s``
after the store received its last beat. So the agent may run cameras until
``sent + heartbeat_ttl_s - margin`` of its last acknowledged beat, and no
longer: a partitioned or frozen agent has stopped its cameras (see
:mod:`camfleet.runtime.lease`, which carries the deadline to the camera
processes) before they can be placed elsewhere.

A lease that lapsed is not renewed by the next beat: the agent must first
rejoin (register again, read its desired state, run exactly that) and then
:meth:`Fence.grant` a new one. Times are nanoseconds of
:func:`camfleet.runtime.lease.lease_clock_ns` (injectable for tests).
"""

from __future__ import annotations

from collections.abc import Callable

from camfleet.runtime.lease import lease_clock_ns

__all__ = ["FENCE_MARGIN_S", "Fence"]

FENCE_MARGIN_S = 1.0
"""Seconds before its heartbeat could expire that the node stops its cameras (at most a TTL quarter)."""


class Fence:
    """Holds the lease while beats are acknowledged in time; ``write`` gets each new deadline (0: none).

    ``ttl_s`` is the heartbeat TTL in seconds; the lease lasts ``ttl_s`` minus
    the margin from each acknowledged beat's send time. It starts not held.
    """

    def __init__(self, ttl_s: float, write: Callable[[int], None], *,
                 clock: Callable[[], int] = lease_clock_ns, margin_s: float = FENCE_MARGIN_S) -> None:
        self.lease_ns = round((ttl_s - min(margin_s, ttl_s / 4)) * 1e9)
        self._write = write
        self._clock = clock
        self._deadline = 0
        self.lapsed_at: int | None = None
        """When the lease last lapsed (None: it holds, or was never held)."""
        self.last_acked_sent = 0
        """Send time of the last beat that renewed or granted the lease (0: none yet)."""

    @property
    def held(self) -> bool:
        """Whether the lease holds (as of the last :meth:`check`, :meth:`acked` or :meth:`grant`)."""
        return self._deadline != 0

    @property
    def deadline(self) -> int:
        """The deadline in force (0: no lease)."""
        return self._deadline

    def check(self) -> bool:
        """Whether the lease lapsed just now (its deadline passed since the last call)."""
        if self._deadline and self._clock() >= self._deadline:
            self._lapse()
            return True
        return False

    def acked(self, sent: int) -> bool:
        """A beat sent at ``sent`` was acknowledged: extend the lease; False when it does not hold.

        A lease whose deadline passed before the acknowledgement came lapses
        here (an agent frozen past its deadline: its cameras stopped meanwhile).
        """
        if self.check() or not self._deadline:
            return False
        deadline = sent + self.lease_ns
        if deadline > self._deadline:
            self._deadline = deadline
            self._write(deadline)
        self.last_acked_sent = max(self.last_acked_sent, sent)
        return True

    def grant(self, sent: int) -> bool:
        """Take a new lease from a beat sent at ``sent`` (after a rejoin); False if too old already."""
        deadline = sent + self.lease_ns
        if self._clock() >= deadline:
            return False
        self._deadline, self.lapsed_at = deadline, None
        self.last_acked_sent = max(self.last_acked_sent, sent)
        self._write(deadline)
        return True

    def revoke(self) -> None:
        """End the lease now (a clean stop); held again only by :meth:`grant`."""
        if self._deadline:
            self._lapse()

    def outage_s(self, now: int | None = None) -> float:
        """Seconds since the last beat that renewed the lease was sent (0 before the first)."""
        if not self.last_acked_sent:
            return 0.0
        return ((self._clock() if now is None else now) - self.last_acked_sent) / 1e9

    def _lapse(self) -> None:
        self.lapsed_at = self._clock()
        self._deadline = 0
        self._write(0)  # "no lease" rather than a deadline in the past: clear to every reader
