"""A region of a ring frame as an RGB model input, written straight into the caller's array.

A detector request needs each region cropped, scaled to the model's input size
and converted to RGB. Converting the whole frame to RGB first and scaling that
(3 bytes per pixel, at the frame's size) costs several times more than scaling
the frame's own YUV planes (1.5 bytes per pixel) and converting only the
model-sized result: at 640x360 -> 300x300 about 0.25 ms instead of 1.5 ms, and
the result lands in the destination (the request ring's slot) with no extra copy.
Frigate prepares its model input the same way (crop and scale in YUV, then
convert).

Scaling is bilinear (``cv2.INTER_LINEAR``) as in the OpenCV loop a user writes:
motion regions are squares at least the model's size, so they shrink by little,
where bilinear and area averaging give nearly the same picture; OpenCV's area
averaging at a non-integer ratio costs about six times more.
"""

from __future__ import annotations

import cv2
import numpy as np

from camfleet.framebus import PixelFormat

from .context import FrameContext

Region = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in frame pixels, end exclusive."""

_INTERP = cv2.INTER_LINEAR


class RgbCropper:
    """Writes regions of a frame, scaled and converted, into ``HxWx3`` uint8 RGB arrays.

    Keeps one small scratch buffer (the scaled region in the frame's YUV layout) per
    output size, so a frame's crops allocate nothing. Not thread-safe (one per element).
    """

    def __init__(self) -> None:
        self._scratch: dict[tuple[int, int, PixelFormat], np.ndarray] = {}

    def write(self, ctx: FrameContext, region: Region, dst: np.ndarray) -> None:
        """Crop ``region`` of ``ctx``'s frame, scale it to ``dst``'s size and write it there as RGB.

        ``dst``: an ``(h, w, 3)`` uint8 array (e.g. a request ring slot); ``region`` must lie
        inside the frame and not be empty (ValueError naming it otherwise).
        """
        x0, y0, x1, y1 = region
        if not (0 <= x0 < x1 <= ctx.width and 0 <= y0 < y1 <= ctx.height):
            raise ValueError(f"camera {ctx.camera!r}: crop region {region} is not inside the "
                             f"{ctx.width}x{ctx.height} frame")
        if dst.dtype != np.uint8 or dst.ndim != 3 or dst.shape[2] != 3:
            raise ValueError(f"camera {ctx.camera!r}: crop destination must be HxWx3 uint8, "
                             f"not {dst.shape} {dst.dtype}")
        out_h, out_w = dst.shape[:2]
        pix = ctx.pixel_format
        image = ctx.image
        planar = (pix in (PixelFormat.YUV420P, PixelFormat.NV12) and out_w % 2 == 0 and out_h % 2 == 0
                  and ctx.width % 2 == 0 and ctx.height % 2 == 0 and image.flags.c_contiguous)
        if planar:
            self._from_yuv(ctx, region, dst)
        elif pix in (PixelFormat.RGB24, PixelFormat.BGR24, PixelFormat.GRAY):
            src = image[y0:y1, x0:x1]
            if pix == PixelFormat.RGB24:
                _store(cv2.resize(src, (out_w, out_h), dst=dst, interpolation=_INTERP), dst)
            else:
                code = cv2.COLOR_BGR2RGB if pix == PixelFormat.BGR24 else cv2.COLOR_GRAY2RGB
                small = cv2.resize(src, (out_w, out_h), interpolation=_INTERP)
                _store(cv2.cvtColor(small, code, dst=dst), dst)
        else:  # an odd size: the whole frame's RGB (computed once per frame), then scaled
            rgb = ctx.rgb()[y0:y1, x0:x1]
            _store(cv2.resize(rgb, (out_w, out_h), dst=dst, interpolation=_INTERP), dst)

    def _from_yuv(self, ctx: FrameContext, region: Region, dst: np.ndarray) -> None:
        """Scale the region's Y and chroma planes into a YUV scratch buffer, convert that into ``dst``."""
        x0, y0, x1, y1 = region
        w, h = ctx.width, ctx.height
        out_h, out_w = dst.shape[:2]
        key = (out_w, out_h, ctx.pixel_format)
        scratch = self._scratch.get(key)
        if scratch is None:
            scratch = self._scratch[key] = np.empty((out_h * 3 // 2, out_w), np.uint8)
        flat = ctx.image.reshape(-1)
        luma = flat[: w * h].reshape(h, w)
        # chroma covers the region's luma pixels (4:2:0: one sample per 2x2 block)
        cx0, cy0, cx1, cy1 = x0 // 2, y0 // 2, (x1 + 1) // 2, (y1 + 1) // 2
        cw, ch = w // 2, h // 2
        ow, oh = out_w // 2, out_h // 2
        ys = scratch[:out_h]
        _store(cv2.resize(luma[y0:y1, x0:x1], (out_w, out_h), dst=ys, interpolation=_INTERP), ys)
        if ctx.pixel_format == PixelFormat.YUV420P:
            chroma = scratch[out_h:].reshape(-1)
            for i in range(2):  # U, then V
                plane = flat[w * h + i * cw * ch: w * h + (i + 1) * cw * ch].reshape(ch, cw)
                out = chroma[i * ow * oh: (i + 1) * ow * oh].reshape(oh, ow)
                _store(cv2.resize(plane[cy0:cy1, cx0:cx1], (ow, oh), dst=out, interpolation=_INTERP), out)
            code = cv2.COLOR_YUV2RGB_I420
        else:
            uv = flat[w * h: w * h + cw * ch * 2].reshape(ch, cw, 2)
            uv_out = scratch[out_h:].reshape(oh, ow, 2)
            _store(cv2.resize(uv[cy0:cy1, cx0:cx1], (ow, oh), dst=uv_out, interpolation=_INTERP), uv_out)
            code = cv2.COLOR_YUV2RGB_NV12
        _store(cv2.cvtColor(scratch, code, dst=dst), dst)


def _store(result: np.ndarray, dst: np.ndarray) -> None:
    """Make sure ``result`` is in ``dst`` (OpenCV writes through ``dst=`` only when it can use it as is)."""
    if result is not dst and not np.shares_memory(result, dst):
        np.copyto(dst, result)
