"""Runtime factories for detector-service tests (imported inside the detector process)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from camfleet.detect.models import ModelSpec
from camfleet.detect.types import Detection


class MarkerRuntime:
    """Answers one 'person' per image; an image whose first pixel is 255 blocks
    the detector for a minute (a stuck inference); ``delay_s`` slows every batch."""

    input_size = (300, 300)

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def infer(self, batch: Sequence[np.ndarray]) -> list[list[Detection]]:
        if any(int(img[0, 0, 0]) == 255 for img in batch):
            time.sleep(60)
        if self.delay_s:
            time.sleep(self.delay_s)
        return [[Detection("person", 0, float(img[0, 0, 1]) / 255, (0.0, 0.0, 10.0, 10.0))] for img in batch]


def marker_runtime(spec: ModelSpec, threads: int) -> MarkerRuntime:
    return MarkerRuntime()


def slow_marker_runtime(spec: ModelSpec, threads: int) -> MarkerRuntime:
    return MarkerRuntime(delay_s=0.2)
