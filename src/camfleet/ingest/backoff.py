"""Exponential back-off with jitter for reconnecting to a camera."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays (seconds) between reconnect attempts: ``initial * factor**n``, capped at ``maximum``.

    Each delay is spread by ±``jitter`` (a fraction) so that cameras which
    failed together do not reconnect in lock-step. :meth:`reset` after a
    connection that streamed.

    >>> b = Backoff(initial=1, maximum=8, factor=2, jitter=0)
    >>> [b.next_delay() for _ in range(5)]
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """

    initial: float = 1.0
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    attempt: int = 0
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(
                f"invalid back-off: initial={self.initial} maximum={self.maximum} "
                f"factor={self.factor} jitter={self.jitter}"
            )

    def next_delay(self) -> float:
        """The delay before the next attempt; advances the attempt count."""
        base = min(self.initial * self.factor**self.attempt, self.maximum)
        self.attempt += 1
        if self.jitter:
            base *= 1 + self._rng.uniform(-self.jitter, self.jitter)
        return float(min(base, self.maximum * (1 + self.jitter)))

    def bounds(self) -> tuple[float, float]:
        """(shortest, longest) delay the next :meth:`next_delay` may return."""
        base = min(self.initial * self.factor**self.attempt, self.maximum)
        return base * (1 - self.jitter), base * (1 + self.jitter)

    def reset(self) -> None:
        """Start again from ``initial``."""
        self.attempt = 0
