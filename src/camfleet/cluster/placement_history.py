"""Reschedule back-off, per-window cap and lost-node memory for the placement scheduler."""

from __future__ import annotations

from dataclasses import dataclass, field

from camfleet.cluster.placement_types import CameraHistory, History, PlacementSettings


@dataclass(slots=True)
class _Cam:
    reschedules: list[float] = field(default_factory=list)
    failed_on: dict[str, float] = field(default_factory=dict)
    hold_until: float | None = None


class HistoryBook:
    """A mutable copy of :class:`History` for one pass, pruned to the window at ``now``."""

    def __init__(self, history: History, settings: PlacementSettings, now: float) -> None:
        self.settings = settings
        self.now = now
        since = now - settings.reschedule_window_s
        self.cams: dict[str, _Cam] = {}
        for cid, h in history.cameras.items():
            self.cams[cid] = _Cam([t for t in h.reschedules if t > since],
                                  {n: t for n, t in h.failed_on if t > since}, h.hold_until)
        self.lost_at = {n: t for n, t in history.lost_at.items() if t > since}

    def _cam(self, camera: str) -> _Cam:
        return self.cams.setdefault(camera, _Cam())

    def node_lost(self, node: str, *, fresh: bool) -> None:
        """Remember that ``node`` lost its cameras now (``fresh``: it still had some).

        A node counted lost without cameras (one registered but not beating yet,
        or lost before and remembered already) is not remembered now: it took
        nothing with it, and a node that is only starting must not be held back
        as flapping for the whole window once it beats.
        """
        if fresh:
            self.lost_at[node] = self.now

    def avoid(self, camera: str) -> frozenset[str]:
        """Nodes that lost ``camera`` within the window (placed there only if nothing else fits)."""
        h = self.cams.get(camera)
        return frozenset(h.failed_on) if h else frozenset()

    def failed(self, camera: str, node: str) -> None:
        """``node`` lost ``camera`` now."""
        self._cam(camera).failed_on[node] = self.now

    def hold(self, camera: str) -> tuple[float | None, str]:
        """When ``camera`` may next be placed again after a loss (None: now) and why it waits."""
        s, h = self.settings, self.cams.get(camera)
        if h is None or not h.reschedules:
            return None, ""
        times = sorted(h.reschedules)
        k = len(times)
        if k >= s.reschedule_cap:
            at = times[-s.reschedule_cap] + s.reschedule_window_s
            why = (f"reschedule cap: {k} reschedules in the last {s.reschedule_window_s:g} s "
                   f"(cap {s.reschedule_cap})")
        else:
            at = times[-1] + min(s.backoff_base_s * 2 ** (k - 1), s.backoff_max_s)
            why = f"back-off after {k} reschedule(s) in the last {s.reschedule_window_s:g} s"
        return (at, why) if at > self.now else (None, "")

    def held(self, camera: str) -> float | None:
        """The time a camera held earlier may be placed again (None: not held any more)."""
        h = self.cams.get(camera)
        if h is None or h.hold_until is None or h.hold_until <= self.now:
            return None
        return h.hold_until

    def set_hold(self, camera: str, until: float | None) -> None:
        """Hold ``camera`` until ``until`` (None: release)."""
        if until is not None or camera in self.cams:
            self._cam(camera).hold_until = until

    def rescheduled(self, camera: str) -> None:
        """``camera`` was placed again after losing its node, now."""
        h = self._cam(camera)
        h.reschedules.append(self.now)
        h.hold_until = None

    def freeze(self, cameras: set[str]) -> History:
        """The history to hand to the next pass (cameras no longer configured are forgotten)."""
        out: dict[str, CameraHistory] = {}
        for cid in sorted(self.cams):
            h = self.cams[cid]
            if cid not in cameras or not (h.reschedules or h.failed_on or h.hold_until is not None):
                continue
            out[cid] = CameraHistory(tuple(sorted(h.reschedules)),
                                     tuple(sorted(h.failed_on.items())), h.hold_until)
        return History(out, dict(sorted(self.lost_at.items())))
