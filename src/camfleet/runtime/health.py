"""Health of supervised processes: states, ordering, and the restart policy (pure logic)."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass

from camfleet.config import RuntimeSettings

from .control import HealthState

# "ended" outranks "degraded": while an ended camera's pipeline and recorder finish (waiting for
# frames that will not come), the camera is ended, not degraded; a failure still shows above it
_SEVERITY: dict[str, int] = {
    "healthy": 0, "stopped": 0, "starting": 1, "degraded": 2, "ended": 3, "restarting": 4,
    "unresponsive": 5, "failed": 6,
}

EXIT_ENDED = 100
"""Exit code of a process whose work is done for good (its file source ended): never restarted."""


def worst(states: Iterable[HealthState]) -> HealthState:
    """The most severe of ``states`` (a camera is as healthy as its sickest process)."""
    result: HealthState = "healthy"
    for state in states:
        if _SEVERITY[state] > _SEVERITY[result]:
            result = state
    return result


@dataclass(frozen=True)
class RestartDecision:
    """What to do after a failure: wait ``delay_s``, and whether the process is now ``failed``."""

    delay_s: float
    failed: bool
    failures_in_window: int


class RestartPolicy:
    """Exponential back-off; ``max_failures`` within ``failure_window`` seconds → failed.

    A failed process is retried every ``failed_retry`` seconds instead of in
    a storm; a process that has stayed up for ``stable_s`` seconds starts
    again from the initial delay.
    """

    def __init__(self, settings: RuntimeSettings, *, stable_s: float = 30.0) -> None:
        self.settings = settings
        self.stable_s = stable_s
        self._failures: collections.deque[float] = collections.deque()
        self._delay = settings.backoff_initial

    def failure(self, now: float) -> RestartDecision:
        """Record a failure at ``now`` (monotonic seconds) and decide the next start."""
        s = self.settings
        self._failures.append(now)
        while self._failures and now - self._failures[0] > s.failure_window:
            self._failures.popleft()
        count = len(self._failures)
        if count >= s.max_failures:
            return RestartDecision(s.failed_retry, True, count)
        delay = self._delay
        self._delay = min(self._delay * 2, s.backoff_max)
        return RestartDecision(delay, False, count)

    def running_since(self, started: float, now: float) -> None:
        """Reset the back-off once a process has run ``stable_s`` seconds without failing."""
        if now - started >= self.stable_s:
            self._delay = self.settings.backoff_initial

    def update(self, settings: RuntimeSettings) -> None:
        """Use new settings from the next decision on."""
        self.settings = settings
        self._delay = min(self._delay, settings.backoff_max)
