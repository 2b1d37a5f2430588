"""Fitting images to a model's input (stretch or letterbox) and mapping boxes back to image pixels.

Also names the array types the detection runtimes pass around.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from .models import ResizeMode

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
Image8 = npt.NDArray[np.uint8]

LETTERBOX_FILL = 114
"""Grey level of the letterbox padding (the YOLO convention)."""


@dataclass(frozen=True)
class Geometry:
    """How an image was fitted to the model input: ``input = image * scale + pad`` per axis.

    ``width``/``height`` are the original image's size in pixels.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_image(self, boxes: FloatArray) -> FloatArray:
        """Map ``[N, 4]`` boxes ``(x0, y0, x1, y1)`` from model-input pixels to image pixels (clipped)."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0.0, float(self.width), out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, float(self.height), out=out[:, 1::2])
        return out


def fit_image(image: Image8, size: tuple[int, int], mode: ResizeMode) -> tuple[Image8, Geometry]:
    """Fit an ``HxWx3`` uint8 image to ``size`` = (width, height) by ``"stretch"`` or ``"letterbox"``.

    Resampling is bilinear.

    Returns the fitted ``size[1] x size[0] x 3`` image and the :class:`Geometry` to map boxes back.
    """
    in_w, in_h = size
    h, w = image.shape[:2]
    if mode == "stretch":
        geo = Geometry(in_w / w, in_h / h, 0.0, 0.0, w, h)
        if (w, h) == (in_w, in_h):
            return image, geo
        return _resize(image, in_w, in_h), geo
    s = min(in_w / w, in_h / h)
    nw, nh = max(1, min(in_w, round(w * s))), max(1, min(in_h, round(h * s)))
    px, py = (in_w - nw) // 2, (in_h - nh) // 2
    geo = Geometry(nw / w, nh / h, float(px), float(py), w, h)
    if (nw, nh) == (in_w, in_h):
        return (image if (w, h) == (in_w, in_h) else _resize(image, in_w, in_h)), geo
    canvas = np.full((in_h, in_w, 3), LETTERBOX_FILL, dtype=np.uint8)
    canvas[py:py + nh, px:px + nw] = image if (w, h) == (nw, nh) else _resize(image, nw, nh)
    return canvas, geo


def _resize(image: Image8, width: int, height: int) -> Image8:
    pil = Image.fromarray(np.ascontiguousarray(image))
    out = pil.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)
