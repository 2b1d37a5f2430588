"""Scripted walking scenes with exact ground truth, for measuring tracking (``bench/tracking.py``).

Unlike :class:`camfleet.ingest.scene.Scene` (one object per lane, never hidden), a
:class:`WalkScene` has people walking along scripted paths: crossing each other,
passing behind an occluder, stopping and starting. It reuses that module's photographs
and backdrop, so the default COCO detector finds the same people.

A walker is a photograph moving through keyframes ``(t, x, y)``: time in seconds, the
middle of its feet in pixels. It is on the scene from its first keyframe to its last,
faces the way it walks, and is drawn nearest-last (a larger ``y`` is nearer the camera);
occluders are drawn over everyone. :meth:`WalkScene.truth` gives, at any time, every
walker's id, label and the box of its visible pixels, with the visible fraction of its
whole photograph, so an evaluation can ignore mostly hidden people.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from camfleet.ingest.scene import OBJECTS, _background, _photo, _resize

__all__ = ["SCENES", "Occluder", "Truth", "WalkScene", "Walker"]

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Walker:
    """One person walking through keyframes.

    ``photo`` names an entry of :data:`camfleet.ingest.scene.OBJECTS`; ``height`` is its
    drawn height in pixels; ``keys`` are ``(t_s, x_px, y_px)`` keyframes, times increasing,
    ``(x, y)`` the middle of its feet. Two equal positions in a row: it stands.
    """

    id: int
    photo: str
    height: int
    keys: tuple[tuple[float, float, float], ...]

    def position(self, t: float) -> tuple[float, float, float] | None:
        """``(x, y, dx)`` at ``t`` (``dx`` the direction it last walked: -1 or 1), None when absent."""
        keys = self.keys
        if t < keys[0][0] or t > keys[-1][0]:
            return None
        facing = 1.0
        for (t0, x0, y0), (t1, x1, y1) in itertools.pairwise(keys):
            if x1 != x0:
                facing = 1.0 if x1 > x0 else -1.0
            if t <= t1:
                f = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return x0 + f * (x1 - x0), y0 + f * (y1 - y0), facing
        return keys[-1][1], keys[-1][2], facing


@dataclass(frozen=True)
class Occluder:
    """A solid box drawn over every walker (a kiosk, a hedge): pixels ``x0, y0, x1, y1``."""

    x0: int
    y0: int
    x1: int
    y1: int


@dataclass(frozen=True)
class Truth:
    """One walker in one frame.

    ``box`` bounds its visible pixels (x1/y1 exclusive); ``visible`` is the fraction of its
    photograph that shows (0..1).
    """

    id: int
    label: str
    box: tuple[int, int, int, int]
    visible: float


@functools.cache
def _sprite(photo: str, height: int) -> U8:
    """The photograph scaled to ``height`` pixels (RGB), made once per process."""
    src = _photo(photo)
    width = max(2, round(height * src.shape[1] / src.shape[0]))
    return _resize(src, height, width)


def _occluder_texture(h: int, w: int) -> U8:
    """A brown-grey kiosk wall with planks: plain enough that no detector sees anything in it."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = (118, 98, 80)
    img[:, ::18] = (90, 74, 60)
    img[: max(2, h // 12)] = (70, 60, 52)
    return img


class WalkScene:
    """People walking over the park backdrop of :mod:`camfleet.ingest.scene`; frames at any time.

    ``width``/``height`` in pixels; ``duration`` in seconds. Frames are a pure function of
    the time, so the same scene sampled at 5 and 10 fps shows the same walk.
    """

    def __init__(self, name: str, width: int, height: int, duration: float,
                 walkers: Sequence[Walker], occluders: Sequence[Occluder] = ()) -> None:
        unknown = [w.photo for w in walkers if w.photo not in OBJECTS]
        if unknown:
            raise ValueError(f"scene {name!r}: unknown photograph(s) {unknown}; known: {sorted(OBJECTS)}")
        self.name = name
        self.width, self.height, self.duration = width, height, duration
        self.walkers = tuple(walkers)
        self.occluders = tuple(occluders)
        self._bg = _background(width, height)
        self._occ = [(o, _occluder_texture(o.y1 - o.y0, o.x1 - o.x0)) for o in self.occluders]

    def _placed(self, t: float) -> list[tuple[Walker, U8, int, int]]:
        """Walkers present at ``t`` with their (flipped) sprite and top-left corner, farthest first."""
        out = []
        for w in self.walkers:
            pos = self.walker_at(w, t)
            if pos is None:
                continue
            sprite, x, y = pos
            out.append((w, sprite, x, y))
        out.sort(key=lambda p: p[3] + p[1].shape[0])  # by the feet's row: nearer ones later
        return out

    @staticmethod
    def walker_at(w: Walker, t: float) -> tuple[U8, int, int] | None:
        """``w``'s sprite (facing its way) and top-left corner at ``t``, None when absent."""
        pos = w.position(t)
        if pos is None:
            return None
        fx, fy, facing = pos
        sprite = _sprite(w.photo, w.height)
        if facing < 0:
            sprite = sprite[:, ::-1]
        h, wd = sprite.shape[:2]
        return sprite, round(fx - wd / 2), round(fy - h)

    def _paint(self, t: float, out: U8 | None, ids: npt.NDArray[np.int32] | None) -> None:
        for w, sprite, x, y in self._placed(t):
            h, wd = sprite.shape[:2]
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + wd, self.width), min(y + h, self.height)
            if x0 >= x1 or y0 >= y1:
                continue
            if out is not None:
                out[y0:y1, x0:x1] = sprite[y0 - y : y1 - y, x0 - x : x1 - x]
            if ids is not None:
                ids[y0:y1, x0:x1] = w.id
        for o, tex in self._occ:
            if out is not None:
                out[o.y0 : o.y1, o.x0 : o.x1] = tex
            if ids is not None:
                ids[o.y0 : o.y1, o.x0 : o.x1] = -1

    def render_rgb(self, t: float) -> U8:
        """The frame at ``t`` seconds: a new ``(height, width, 3)`` RGB array."""
        out = self._bg.copy()
        self._paint(t, out, None)
        return out

    def render_i420(self, t: float) -> U8:
        """The frame at ``t`` seconds as I420 (``height * 3 // 2`` rows of ``width`` bytes)."""
        out = cv2.cvtColor(self.render_rgb(t), cv2.COLOR_RGB2YUV_I420)
        return np.asarray(out, np.uint8)

    def truth(self, t: float) -> list[Truth]:
        """Every walker on the scene at ``t``, with the box of its visible pixels (none if hidden)."""
        ids = np.zeros((self.height, self.width), np.int32)
        self._paint(t, None, ids)
        out = []
        for w, sprite, _x, _y in self._placed(t):
            ys, xs = np.nonzero(ids == w.id)
            visible = len(xs) / float(sprite.shape[0] * sprite.shape[1])
            if len(xs) == 0:
                out.append(Truth(w.id, OBJECTS[w.photo].label, (0, 0, 0, 0), 0.0))
                continue
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            out.append(Truth(w.id, OBJECTS[w.photo].label, box, visible))
        return out


def _walk(*keys: tuple[float, float, float]) -> tuple[tuple[float, float, float], ...]:
    return tuple(keys)


def _scenes(width: int = 640, height: int = 360) -> dict[str, WalkScene]:
    """The benchmark's scenes at ``width``x``height`` (positions are scaled from 640x360)."""
    sx, sy = width / 640, height / 360

    def w(i: int, photo: str, h: int, *keys: tuple[float, float, float]) -> Walker:
        return Walker(i, photo, round(h * sy), tuple((t, x * sx, y * sy) for t, x, y in keys))

    off_l, off_r = -70.0, 710.0  # just outside the frame: walkers enter and leave at the edges
    crossing = WalkScene("crossing", width, height, 24.0, [
        # two people cross at the same depth, the nearer one hides the other as they pass
        w(1, "person", 150, (0.0, off_l, 300), (9.0, off_r, 300)),
        w(2, "cameraman", 160, (1.0, off_r, 312), (10.0, off_l, 312)),
        # a third, farther away, crosses both of their paths later
        w(3, "cameraman", 120, (8.0, off_r, 250), (20.0, off_l, 250)),
        w(4, "person", 150, (12.0, off_l, 320), (22.0, off_r, 320)),
    ])
    occluder = WalkScene("occluder", width, height, 26.0, [
        w(1, "person", 140, (0.0, off_l, 300), (10.0, off_r, 300)),
        w(2, "cameraman", 140, (4.0, off_r, 320), (14.0, off_l, 320)),
        w(3, "person", 120, (13.0, off_l, 260), (24.0, off_r, 260)),
    ], [Occluder(round(270 * sx), round(120 * sy), round(400 * sx), height)])
    stop_go = WalkScene("stop-go", width, height, 30.0, [
        # walks in, stands 2 s, walks on, stands 1.5 s, leaves
        w(1, "person", 150, (0.0, off_l, 300), (4.0, 200, 300), (6.0, 200, 300), (9.0, 450, 300),
          (10.5, 450, 300), (13.5, off_r, 300)),
        # walks to the middle and waits 2.5 s while another crosses behind
        w(2, "cameraman", 150, (8.0, off_r, 320), (13.0, 330, 320), (15.5, 330, 320), (21.0, off_l, 320)),
        w(3, "person", 120, (11.0, off_l, 250), (22.0, off_r, 250)),
        # comes in, turns round and goes back
        w(4, "cameraman", 140, (20.0, off_r, 310), (24.0, 420, 310), (25.0, 420, 310), (29.0, off_r, 310)),
    ])
    return {s.name: s for s in (crossing, occluder, stop_go)}


SCENES = _scenes
"""``SCENES(width, height)``: the benchmark's scenes by name (crossing, occluder, stop-go)."""
