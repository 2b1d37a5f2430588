"""A synthetic camera scene made of real photographs moving over a static background.

The photographs are the test images that ship inside scikit-image's data package
(nothing is downloaded at run time), cropped to the object they show:

========== ========= ==============================================================
name       label     photograph (``skimage.data``)
========== ========= ==============================================================
person     person    ``astronaut()``: Eileen Collins in her orange flight suit
cameraman  person    ``camera()``: the classic grayscale cameraman (made 3-channel)
cat        cat       ``chelsea()``: Chelsea the cat, close-up
motorcycle motorcycle ``stereo_motorcycle()`` (left view): a red Yamaha motorbike
========== ========= ==============================================================

scikit-image ships no photograph of a car, so the motorcycle is the scene's
vehicle. Labels are COCO class names, so an off-the-shelf COCO detector can be
scored against :meth:`Scene.boxes`.

Each object gets its own horizontal lane (lanes never overlap, so no object ever
hides another and the ground-truth boxes are exact) and moves left and right
across the frame, bouncing at the edges, with a small vertical bob inside its
lane. Speeds, phases and the order of the lanes derive from ``seed`` only, and
positions are a function of the frame index only, so a scene is reproducible
and the same scene at another resolution shows the same motion, scaled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from skimage import data as skdata  # lazily loaded modules: importing them costs nothing
from skimage import filters, transform

__all__ = ["OBJECTS", "Box", "Scene", "rgb_to_i420"]

Box = tuple[str, int, int, int, int]
"""``(label, x0, y0, x1, y1)`` in pixels; ``x1``/``y1`` are exclusive (``x1 - x0`` is the width)."""

U8 = npt.NDArray[np.uint8]

# Fraction of the frame height left free between lanes (and above/below them):
# it is what the vertical bob moves in.
_FREE_HEIGHT = 0.06
# One-way crossing time of the frame, in frames (at 15 fps: 4 to 9 seconds).
_CROSSING_FRAMES = (60, 135)
# Sprites never get wider than this fraction of the frame width, so they always move.
_MAX_WIDTH_FRACTION = 0.6


@dataclass(frozen=True)
class _Photo:
    """One catalogue entry: where the photograph comes from and how big it is drawn."""

    label: str
    load: Callable[[], U8]
    crop: tuple[int, int, int, int]  # rows y0:y1, columns x0:x1 of the source photograph
    height_fraction: float  # drawn height as a fraction of the frame height, before fitting


def _astronaut() -> U8:
    return np.asarray(skdata.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]


def _cameraman() -> U8:
    gray = np.asarray(skdata.camera(), dtype=np.uint8)  # type: ignore[no-untyped-call]
    return np.repeat(gray[:, :, None], 3, axis=2)


def _chelsea() -> U8:
    return np.asarray(skdata.chelsea(), dtype=np.uint8)  # type: ignore[no-untyped-call]


def _motorcycle() -> U8:
    left, _right, _disparity = skdata.stereo_motorcycle()  # type: ignore[no-untyped-call]
    return np.asarray(left, dtype=np.uint8)


def _grass() -> U8:
    return np.asarray(skdata.grass(), dtype=np.uint8)  # type: ignore[no-untyped-call]


OBJECTS: dict[str, _Photo] = {
    "person": _Photo("person", _astronaut, (8, 512, 15, 365), 0.5),
    "cameraman": _Photo("person", _cameraman, (60, 512, 0, 340), 0.5),
    "cat": _Photo("cat", _chelsea, (0, 300, 0, 451), 0.28),
    "motorcycle": _Photo("motorcycle", _motorcycle, (95, 460, 90, 700), 0.3),
}
"""The objects a :class:`Scene` can show, by name (see the module docstring)."""


@functools.cache
def _photo(name: str) -> U8:
    """The cropped photograph of catalogue entry ``name`` (RGB, uint8), loaded once per process."""
    entry = OBJECTS[name]
    y0, y1, x0, x1 = entry.crop
    return np.ascontiguousarray(entry.load()[y0:y1, x0:x1, :3])


def _resize(image: npt.NDArray[np.generic], height: int, width: int) -> U8:
    """Resize an image (2-D or RGB) to ``height`` x ``width`` pixels with anti-aliasing."""
    out = transform.resize(  # type: ignore[no-untyped-call]
        image, (height, width), order=1, anti_aliasing=True, preserve_range=True
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)  # type: ignore[no-any-return]


def rgb_to_i420(rgb: U8) -> tuple[U8, U8, U8]:
    """Convert an RGB image (h, w, 3; h and w even) to I420 planes ``(Y, U, V)``.

    BT.601 limited range ("TV" levels), which is what decoders assume for a
    stream that does not say otherwise. U and V are averaged over 2x2 blocks.
    """
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs an even width and height, got {w}x{h}")
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    # Average the 2x2 blocks before converting: the transform is linear, so this is exact and 4x cheaper.
    sub = f.reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
    r2, g2, b2 = sub[..., 0], sub[..., 1], sub[..., 2]
    u = 128.0 + (-37.797 * r2 - 74.203 * g2 + 112.0 * b2) / 255.0
    v = 128.0 + (112.0 * r2 - 93.786 * g2 - 18.214 * b2) / 255.0

    def q(a: npt.NDArray[np.float32]) -> U8:
        return np.clip(np.rint(a), 0, 255).astype(np.uint8)

    return q(y), q(u), q(v)


def _background(width: int, height: int) -> U8:
    """A park-like backdrop (RGB): a pale sky over blurred, green-tinted grass from ``skimage.data.grass``."""
    horizon = int(height * 0.3)
    rows = np.arange(height, dtype=np.float32)[:, None, None]
    # Sky: light blue-grey at the top, paler towards the horizon.
    t = np.clip(rows / max(horizon, 1), 0.0, 1.0)
    sky = (1 - t) * np.array([150, 180, 215], np.float32) + t * np.array([205, 215, 225], np.float32)
    # Grass: the texture is blurred and its contrast lowered so that the static background stays cheap
    # to encode and never looks like an object to a detector.
    texture = filters.gaussian(  # type: ignore[no-untyped-call]
        _grass().astype(np.float32) / 255.0, sigma=2.0, preserve_range=True)
    tex = _resize(np.clip(texture * 255.0, 0, 255).astype(np.uint8), height, width).astype(np.float32)
    shade = 0.75 + 0.5 * (tex[:, :, None] / 255.0 - 0.5)
    grass = shade * np.array([95, 140, 70], np.float32)
    img = np.where(rows < horizon, np.broadcast_to(sky, (height, width, 3)), grass)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Sprite:
    """One object of a scene, pre-scaled to the scene's resolution, and its motion."""

    label: str
    rgb: U8
    planes: tuple[U8, U8, U8]  # I420 of ``rgb``
    lane_top: int  # even pixel row where the lane starts
    lane_slack: int  # even number of pixel rows the sprite can bob inside its lane
    phase_x: float  # start position along the bounce, in crossings (0..2)
    speed_x: float  # crossings per frame
    phase_y: float
    speed_y: float

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _bounce(phase: float) -> float:
    """A triangle wave: 0 → 1 → 0 as ``phase`` goes 0 → 1 → 2, repeating."""
    p = phase % 2.0
    return p if p <= 1.0 else 2.0 - p


def _even(value: float) -> int:
    """Round to the nearest even integer (I420 chroma is subsampled 2x2, so sprites sit on even pixels)."""
    return 2 * round(value / 2.0)


class Scene:
    """Real photographs (people, a cat, a motorcycle) moving over a static park backdrop.

    ``width`` and ``height`` are in pixels and must be even (I420). ``objects``
    names entries of :data:`OBJECTS`, one sprite each (a name may repeat);
    ``seed`` fixes the lane order, speeds and phases. Frames are a pure function
    of ``(width, height, seed, objects, frame_index)``.

    Everything that does not change from frame to frame (background, scaled
    sprites, their I420 planes) is prepared once in the constructor (tens of
    milliseconds); rendering a frame is then a copy of the background plus one
    copy per sprite.
    """

    def __init__(
        self,
        width: int,
        height: int,
        seed: int = 0,
        objects: Sequence[str] = ("person", "cat", "motorcycle"),
    ) -> None:
        if width < 16 or height < 16 or width % 2 or height % 2:
            raise ValueError(f"scene size must be even and at least 16x16 pixels, got {width}x{height}")
        unknown = [o for o in objects if o not in OBJECTS]
        if unknown:
            raise ValueError(f"unknown scene object(s) {unknown}; known: {sorted(OBJECTS)}")
        if not objects:
            raise ValueError("a scene needs at least one object")
        self.width = width
        self.height = height
        self.seed = seed
        self.objects = tuple(objects)

        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self.objects))  # which object gets which lane, top to bottom
        # Fit the lanes into the frame: scale every object down by the same factor when their
        # nominal heights (plus the free space) do not fit.
        nominal = [OBJECTS[o].height_fraction for o in self.objects]
        fit = min(1.0, (1.0 - _FREE_HEIGHT) / sum(nominal))
        scaled: list[U8] = []
        for name, frac in zip(self.objects, nominal, strict=True):
            photo = _photo(name)
            ph, pw = photo.shape[:2]
            h = height * frac * fit
            w = h * pw / ph
            if w > width * _MAX_WIDTH_FRACTION:  # a very narrow frame: keep the sprite's aspect ratio
                w = width * _MAX_WIDTH_FRACTION
                h = w * ph / pw
            scaled.append(_resize(photo, max(2, _even(h)), max(2, _even(w))))
        # Whole, even pixel rows per lane, so that lanes provably never overlap.
        free = height - sum(int(r.shape[0]) for r in scaled)
        slack = max(0, 2 * (free // (2 * len(scaled))))

        sprites: list[_Sprite | None] = [None] * len(self.objects)
        top = 0
        for lane in (int(i) for i in order):
            rgb = scaled[lane]
            sprites[lane] = _Sprite(
                label=OBJECTS[self.objects[lane]].label,
                rgb=rgb,
                planes=rgb_to_i420(rgb),
                lane_top=min(top, height - int(rgb.shape[0])),
                lane_slack=slack,
                phase_x=float(rng.uniform(0.0, 2.0)),
                speed_x=1.0 / float(rng.uniform(*_CROSSING_FRAMES)),
                phase_y=float(rng.uniform(0.0, 2.0)),
                speed_y=1.0 / float(rng.uniform(20.0, 45.0)),
            )
            top += int(rgb.shape[0]) + slack
        self._sprites = [s for s in sprites if s is not None]

        bg = _background(width, height)
        self._bg_rgb = bg
        y, u, v = rgb_to_i420(bg)
        self._bg_i420 = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(height * 3 // 2, width)

    def _positions(self, frame_index: int) -> list[tuple[_Sprite, int, int]]:
        """Each sprite with its top-left corner (x, y), even pixels, at ``frame_index``."""
        out = []
        for s in self._sprites:
            x = _even(_bounce(s.phase_x + s.speed_x * frame_index) * (self.width - s.width))
            y = s.lane_top + _even(_bounce(s.phase_y + s.speed_y * frame_index) * s.lane_slack)
            out.append((s, min(max(x, 0), self.width - s.width), min(max(y, 0), self.height - s.height)))
        return out

    def boxes(self, frame_index: int) -> list[Box]:
        """Ground truth at ``frame_index``: ``(label, x0, y0, x1, y1)`` per object, in pixels.

        ``x1`` and ``y1`` are exclusive. Every object is always entirely inside
        the frame and never hidden by another one, so every object is listed.
        """
        return [(s.label, x, y, x + s.width, y + s.height) for s, x, y in self._positions(frame_index)]

    def render_rgb(self, frame_index: int) -> U8:
        """Frame ``frame_index`` as RGB: a new ``(height, width, 3)`` uint8 array."""
        out = self._bg_rgb.copy()
        for s, x, y in self._positions(frame_index):
            out[y : y + s.height, x : x + s.width] = s.rgb
        return out

    def render_i420(self, frame_index: int) -> U8:
        """Frame ``frame_index`` as I420: a new ``(height * 3 // 2, width)`` uint8 array.

        The buffer holds the Y plane (``height`` x ``width``), then U, then V
        (each ``height / 2`` x ``width / 2``), contiguous: exactly the raw
        ``yuv420p`` layout an encoder takes.
        """
        w, h = self.width, self.height
        out = self._bg_i420.copy()
        flat = out.reshape(-1)
        y_plane = flat[: w * h].reshape(h, w)
        u_plane = flat[w * h : w * h * 5 // 4].reshape(h // 2, w // 2)
        v_plane = flat[w * h * 5 // 4 :].reshape(h // 2, w // 2)
        for s, x, y in self._positions(frame_index):
            sy, su, sv = s.planes
            y_plane[y : y + s.height, x : x + s.width] = sy
            cx, cy, cw, ch = x // 2, y // 2, s.width // 2, s.height // 2
            u_plane[cy : cy + ch, cx : cx + cw] = su
            v_plane[cy : cy + ch, cx : cx + cw] = sv
        return out

    def background_i420(self) -> U8:
        """The scene with no object in it (a still camera), as I420 like :meth:`render_i420`: a new array."""
        return self._bg_i420.copy()
