"""Motion gating: what the detector is asked to look at (ghosts of objects that left, merged crops)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from camfleet.framebus import PixelFormat
from camfleet.ingest.scene import Scene
from camfleet.pipeline import Box, Detection, FrameContext, Pipeline, PipelineEnv
from camfleet.pipeline.detect import _combine, _empty_motion

pytestmark = pytest.mark.unit

W, H, FPS = 640, 360, 5
INPUT = (300, 300)


class StandInDetector:
    """A detector service stand-in: counts the crops it is given; ``finds`` says whether each holds
    a person (a box over the whole crop) or nothing."""

    input_size = INPUT

    def __init__(self, finds: bool) -> None:
        self.finds = finds
        self.images = 0

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        self.images += len(images)
        hit = [Detection("person", 0, 0.9, Box(0, 0, *INPUT))] if self.finds else []
        return [list(hit) for _ in images]


def ctx_at(i: int, image: np.ndarray) -> FrameContext:
    return FrameContext(camera="cam", seq=i + 1, pts=i, capture_ns=int(1e12 + i * 1e9 / FPS),
                        width=W, height=H, pixel_format=PixelFormat.YUV420P, image=image)


def run(tmp_path: Path, frames: list[np.ndarray], detector: StandInDetector,
        motion: dict[str, Any] | None = None) -> list[list[Box]]:
    """Motion boxes of each frame through motion -> detect."""
    env = PipelineEnv(camera="cam", data_dir=tmp_path, services={"detectors": {"cpu": detector}})
    p = Pipeline([("motion", motion or {}), ("detect", {})], env)
    return [list(p.process(ctx_at(i, img)).motion) for i, img in enumerate(frames)]


def walk_then_leave(walk: int, empty: int) -> list[np.ndarray]:
    scene = Scene(width=W, height=H, seed=1, objects=("person", "cat"))
    return [scene.render_i420(i) for i in range(walk)] + [scene.background_i420()] * empty


def test_ghost_of_objects_that_left_costs_one_detector_look_not_seconds(tmp_path: Path) -> None:
    frames = walk_then_leave(20, 15)
    seen: dict[bool, tuple[list[list[Box]], int]] = {}
    for absorb in (False, True):
        det = StandInDetector(finds=False)
        seen[absorb] = run(tmp_path, frames, det, {"absorb_empty": absorb}), det.images
    old, new = seen[False][0], seen[True][0]
    # the running average alone: the ghost stays motion for a second and more
    assert sum(bool(m) for m in old[20:]) >= 5
    # told that the detector found nothing there, motion takes the still ghost in at once: only the
    # frame where the objects vanished (a real change) is motion
    assert [bool(m) for m in new[20:]] == [True] + [False] * 14
    assert seen[True][1] < seen[False][1]
    # what moves is never taken in, even when the detector misses it every time
    assert sum(bool(m) for m in new[1:20]) == 19


def test_motion_where_the_detector_finds_something_is_left_to_the_running_average(tmp_path: Path) -> None:
    # a person who stops (the same picture again and again) stays motion exactly as long as before
    scene = Scene(width=W, height=H, seed=1, objects=("person",))
    frames = [scene.render_i420(i) for i in range(10)] + [scene.render_i420(10)] * 20
    runs = [run(tmp_path, frames, StandInDetector(finds=True), {"absorb_empty": a}) for a in (False, True)]
    assert runs[0] == runs[1]
    assert sum(bool(m) for m in runs[1][10:]) >= 5


def test_empty_motion_is_what_was_looked_at_and_found_nothing_in() -> None:
    motion = [Box(10, 10, 50, 50), Box(200, 200, 240, 240), Box(500, 10, 540, 50)]
    regions = [(0, 0, 300, 300)]  # the third box was not sent (max_regions)
    found = [Detection("person", 0, 0.9, Box(220, 220, 260, 300))]
    assert _empty_motion(motion, regions, found) == [Box(10, 10, 50, 50)]


def _boxes_in(box: Box, region: tuple[int, int, int, int]) -> bool:
    return region[0] <= box.x0 and region[1] <= box.y0 and box.x1 <= region[2] and box.y1 <= region[3]


def test_crops_merge_only_while_every_box_stays_big_enough_for_the_model() -> None:
    # two people at either end of a 640x360 frame, each about 150x190 px: in one 640x360 crop
    # squeezed to 300x300 each is still 160 px tall
    big = [Box(20, 20, 170, 210), Box(460, 150, 610, 340)]
    squares = [(0, 0, 300, 300), (340, 60, 640, 360)]
    assert _combine(squares, squares, big, 1.0, INPUT) == squares  # 1: off
    merged = _combine(squares, squares, big, 0.3, INPUT)
    assert merged == [(0, 0, 640, 360)]
    assert all(_boxes_in(b, merged[0]) for b in big)
    # a small box (a distant person, 20x40 px) keeps the crop it had: never shrunk below its size
    small = [Box(20, 20, 170, 210), Box(500, 300, 520, 340)]
    assert _combine(squares, squares, small, 0.3, INPUT) == squares
    # nor is a crop stretched more than 2:1 to the model's square input
    wide = [Box(0, 0, 150, 100), Box(1130, 0, 1280, 100)]
    row = [(0, 0, 300, 300), (980, 0, 1280, 300)]
    assert _combine(row, row, wide, 0.0, INPUT) == row


def test_merged_crops_reach_the_detector_as_one_image(tmp_path: Path) -> None:
    scene = Scene(width=W, height=H, seed=0, objects=("person", "cat"))
    counts = {}
    for merge in (1.0, 0.3):
        det = StandInDetector(finds=True)
        env = PipelineEnv(camera="cam", data_dir=tmp_path, services={"detectors": {"cpu": det}})
        p = Pipeline([("motion", {}), ("detect", {"merge_min_size": merge})], env)
        for i in range(40):
            p.process(ctx_at(i, scene.render_i420(100 + i)))
        counts[merge] = det.images, p.elements[1].requests  # type: ignore[attr-defined]
    assert counts[0.3][1] == counts[1.0][1]  # the same frames are looked at
    assert counts[0.3][0] < counts[1.0][0]


def test_hints_outside_the_picture_or_from_another_frame_size_are_harmless(tmp_path: Path) -> None:
    from camfleet.pipeline.element import EMPTY_MOTION_BOXES

    scene = Scene(width=W, height=H, seed=1, objects=("person",))
    env = PipelineEnv(camera="cam", data_dir=tmp_path)
    p = Pipeline([("motion", {})], env)
    hostile = [Box(-500, -500, -10, -10), Box(5000, 5000, 9000, 9000), Box(100, 100, 100, 100),
               Box(-50, -50, 5000, 5000)]
    for i in range(6):
        env.services[EMPTY_MOTION_BOXES] = hostile
        p.process(ctx_at(i, scene.render_i420(i)))
    # a smaller stream (320x180 scales to the same 180-row plane): the background starts again,
    # the hint of the old size is dropped
    small = Scene(width=320, height=180, seed=1, objects=("person",))
    env.services[EMPTY_MOTION_BOXES] = [Box(0, 0, W, H)]
    ctx = FrameContext(camera="cam", seq=7, pts=7, capture_ns=int(2e12), width=320, height=180,
                       pixel_format=PixelFormat.YUV420P, image=small.render_i420(7))
    assert p.process(ctx).motion == []
    assert EMPTY_MOTION_BOXES not in env.services
    env.services[EMPTY_MOTION_BOXES] = [Box(0, 0, W, H)]  # an old-size hint on the new size: clipped
    ctx = FrameContext(camera="cam", seq=8, pts=8, capture_ns=int(2.2e12), width=320, height=180,
                       pixel_format=PixelFormat.YUV420P, image=small.render_i420(7))
    assert p.process(ctx).motion == []


def test_a_new_plane_height_starts_the_background_again_with_a_hint_pending(tmp_path: Path) -> None:
    from camfleet.pipeline.element import EMPTY_MOTION_BOXES

    scene = Scene(width=W, height=H, seed=1, objects=("person",))
    env = PipelineEnv(camera="cam", data_dir=tmp_path)
    p = Pipeline([("motion", {})], env)
    for i in range(3):
        p.process(ctx_at(i, scene.render_i420(i)))
    p.update([("motion", {"height": 90})], env)  # live reload: a plane half as tall
    env.services[EMPTY_MOTION_BOXES] = [Box(0, 0, W, H)]
    assert p.process(ctx_at(3, scene.render_i420(3))).motion == []
    env.services[EMPTY_MOTION_BOXES] = [Box(0, 0, W, H)]
    assert p.process(ctx_at(4, scene.render_i420(4))).motion  # the person walks on
