"""The simulator's scene activity: a camera that shows its objects only part of the time."""

from __future__ import annotations

import numpy as np
import pytest

from camfleet.ingest.scene import Scene
from camfleet_testing.sim import CameraSpec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_active_share_over_one_period_is_the_fraction_asked(seed: int) -> None:
    spec = CameraSpec(name="c", fps=15, seed=seed, active=0.25, active_period_s=20)
    frames = 15 * 20
    shown = sum(spec.is_active(i) for i in range(frames))
    assert abs(shown - frames * 0.25) <= 1
    # one stretch of activity per period (not flicker): at most two edges in a period
    edges = sum(spec.is_active(i) != spec.is_active(i + 1) for i in range(frames))
    assert edges <= 2


def test_always_active_by_default_and_bad_values_refused() -> None:
    assert all(CameraSpec(name="c").is_active(i) for i in range(1000))
    with pytest.raises(ValueError, match="active"):
        CameraSpec(name="c", active=1.5)


def test_background_is_the_scene_without_its_objects() -> None:
    scene = Scene(64, 48, seed=0, objects=("person",))
    bg = scene.background_i420()
    assert bg.shape == (72, 64) and bg.dtype == np.uint8
    assert not np.array_equal(bg, scene.render_i420(0))  # the person is drawn over it
    bg[:] = 0
    assert scene.background_i420().any()  # a new array each time: the scene is not changed
