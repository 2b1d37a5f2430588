"""Runtime factories for detector-service tests (imported inside the detector process).

:class:`MarkerRuntime` answers what each image says in its first pixel, so a
test knows which detections belong to which image:

* green (``[0, 0, 1]``): the score of its one ``person``, times 255;
* red 255 (``[0, 0, 0]``): the inference blocks for a minute (a stuck worker);
* blue (``[0, 0, 2]``): :data:`WAIT` blocks until an image with :data:`RELEASE`
  has been run by another worker (at most 10 s), so its answer comes after that
  one's whatever the order they were sent in; :data:`DIE` ends the worker
  thread with an exception that is not an ``Exception`` (a worker that dies).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from camfleet.detect.models import ModelSpec
from camfleet.detect.types import Detection

WAIT, RELEASE, DIE = 1, 2, 3
_released = threading.Event()  # one per detector process: shared by its workers' runtimes


class WorkerDied(BaseException):
    """Escapes the worker's ``except Exception``, as a crash in the worker's own code would."""


def marker(score: int = 200, control: int = 0) -> np.ndarray:
    """A 300x300 image saying its detection's score (``score`` / 255) and a ``control`` code."""
    img = np.zeros((300, 300, 3), np.uint8)
    img[0, 0] = (0, score, control)
    return img


class MarkerRuntime:
    """Answers one 'person' per image, as the image's first pixel says (see the module);
    ``delay_s`` slows every batch."""

    input_size = (300, 300)

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def infer(self, batch: Sequence[np.ndarray]) -> list[list[Detection]]:
        if any(int(img[0, 0, 0]) == 255 for img in batch):
            time.sleep(60)
        controls = {int(img[0, 0, 2]) for img in batch}
        if DIE in controls:
            raise WorkerDied("worker died")
        if WAIT in controls:
            _released.wait(10)
        if self.delay_s:
            time.sleep(self.delay_s)
        out = [[Detection("person", 0, float(img[0, 0, 1]) / 255, (0.0, 0.0, 10.0, 10.0))] for img in batch]
        if RELEASE in controls:
            _released.set()
        return out


def marker_runtime(spec: ModelSpec, threads: int) -> MarkerRuntime:
    return MarkerRuntime()


def slow_marker_runtime(spec: ModelSpec, threads: int) -> MarkerRuntime:
    return MarkerRuntime(delay_s=0.2)


SLOW_START_S = 1.5
"""Seconds :func:`slow_start_marker_runtime` takes to build (a big model on a busy machine)."""


def slow_start_marker_runtime(spec: ModelSpec, threads: int) -> MarkerRuntime:
    time.sleep(SLOW_START_S)
    return MarkerRuntime()
