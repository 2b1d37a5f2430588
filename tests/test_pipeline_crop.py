"""Regions of ring frames as RGB model inputs, scaled in YUV and written in place (pipeline/crop.py)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from camfleet.framebus import PixelFormat
from camfleet.ingest.scene import Scene
from camfleet.pipeline.context import FrameContext, to_rgb
from camfleet.pipeline.crop import RgbCropper

pytestmark = pytest.mark.unit

W, H = 640, 360
REGIONS = [(0, 0, W, H), (101, 3, 461, 360), (0, 0, 300, 300), (339, 59, 640, 360), (7, 9, 8, 10)]


@pytest.fixture(scope="module")
def i420() -> np.ndarray:
    return Scene(width=W, height=H, seed=0, objects=("person", "cat")).render_i420(10)


def ctx_of(image: np.ndarray, pix: PixelFormat, w: int = W, h: int = H) -> FrameContext:
    return FrameContext(camera="cam", seq=1, pts=0, capture_ns=0, width=w, height=h, pixel_format=pix,
                        image=image)


def reference(rgb: np.ndarray, region: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """The frame converted to RGB whole, then the region scaled (what the pipeline did before)."""
    x0, y0, x1, y1 = region
    return cv2.resize(rgb[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR).astype(int)


def nv12_of(i420: np.ndarray) -> np.ndarray:
    """The same picture with its chroma interleaved (NV12)."""
    u = i420[H:].reshape(-1)[: W * H // 4].reshape(H // 2, W // 2)
    v = i420[H:].reshape(-1)[W * H // 4:].reshape(H // 2, W // 2)
    uv = np.stack([u, v], axis=2).reshape(H // 2, W)
    return np.concatenate([i420[:H], uv])


@pytest.mark.parametrize("region", REGIONS)
def test_yuv_regions_match_the_whole_frame_conversion_and_land_in_the_destination(
        i420: np.ndarray, region: tuple[int, int, int, int]) -> None:
    """Scaling the planes before converting gives the picture converting first gives (chroma is
    sampled at half resolution either way: a level or so of difference on average), written into
    the caller's array itself (a view into a bigger buffer, like a ring slot)."""
    ring = np.full((2, 300, 300, 3), 7, np.uint8)
    dst = ring[1]
    RgbCropper().write(ctx_of(i420, PixelFormat.YUV420P), region, dst)
    ref = reference(to_rgb(i420, PixelFormat.YUV420P, W, H), region, (300, 300))
    assert np.abs(dst.astype(int) - ref).mean() < 2.0
    assert (ring[0] == 7).all()  # nothing written outside the slot


def test_nv12_gives_the_picture_yuv420p_gives(i420: np.ndarray) -> None:
    cropper = RgbCropper()
    a = np.empty((300, 300, 3), np.uint8)
    b = np.empty((300, 300, 3), np.uint8)
    for region in REGIONS:
        cropper.write(ctx_of(i420, PixelFormat.YUV420P), region, a)
        cropper.write(ctx_of(nv12_of(i420), PixelFormat.NV12), region, b)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, region


@pytest.mark.parametrize("pix", [PixelFormat.RGB24, PixelFormat.BGR24, PixelFormat.GRAY])
def test_packed_formats_are_scaled_and_converted(i420: np.ndarray, pix: PixelFormat) -> None:
    rgb = to_rgb(i420, PixelFormat.YUV420P, W, H)
    image = {PixelFormat.RGB24: rgb, PixelFormat.BGR24: np.ascontiguousarray(rgb[..., ::-1]),
             PixelFormat.GRAY: np.ascontiguousarray(rgb[..., 1])}[pix]
    expect = rgb if pix != PixelFormat.GRAY else np.repeat(image[..., None], 3, axis=2)
    dst = np.empty((200, 240, 3), np.uint8)  # the model need not be square
    region = (101, 3, 461, 360)
    RgbCropper().write(ctx_of(image, pix), region, dst)
    assert np.abs(dst.astype(int) - reference(expect, region, (240, 200))).max() <= 1


def test_an_odd_model_size_takes_the_whole_frame_path(i420: np.ndarray) -> None:
    """A model input of odd size has no 4:2:0 layout: the frame is converted whole, then scaled."""
    ctx = ctx_of(i420, PixelFormat.YUV420P)
    dst = np.empty((301, 301, 3), np.uint8)
    region = (101, 3, 461, 360)
    RgbCropper().write(ctx, region, dst)
    assert np.abs(dst.astype(int) - reference(ctx.rgb(), region, (301, 301))).max() <= 1


def test_bad_regions_and_destinations_are_named() -> None:
    ctx = ctx_of(np.zeros((H * 3 // 2, W), np.uint8), PixelFormat.YUV420P)
    cropper = RgbCropper()
    with pytest.raises(ValueError, match=r"camera 'cam': crop region \(0, 0, 641, 360\) is not inside"):
        cropper.write(ctx, (0, 0, W + 1, H), np.empty((300, 300, 3), np.uint8))
    with pytest.raises(ValueError, match=r"crop region \(10, 10, 10, 20\) is not inside"):
        cropper.write(ctx, (10, 10, 10, 20), np.empty((300, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="must be HxWx3 uint8"):
        cropper.write(ctx, (0, 0, 10, 10), np.empty((300, 300), np.uint8))
