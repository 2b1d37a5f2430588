"""Decoded pictures scaled straight into ring slots (the picture swscale would give); decoder threads."""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np
import pytest

from camfleet.framebus import FrameFormat, FramePublisher, PixelFormat
from camfleet.ingest.convert import FrameConverter
from camfleet.ingest.worker import decode_threads

pytestmark = pytest.mark.unit


def _scene(width: int, height: int, fmt: str) -> av.VideoFrame:
    """A picture with gradients and hard edges (scaling errors show on both)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x // 40 + y // 40) % 2) * 255], axis=2)
    rgb[height // 3 : height // 2, width // 4 : width // 2] = (250, 20, 20)
    frame = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")
    return frame if fmt == "rgb24" else frame.reformat(format=fmt)


def _planes(frame: av.VideoFrame, fmt: FrameFormat) -> list[np.ndarray]:
    """``frame``'s planes as arrays shaped like ``fmt``'s (rows cut to their bytes)."""
    out = []
    for plane, geo in zip(frame.planes, fmt.planes, strict=True):
        row_bytes = int(np.prod(geo.shape[1:]))
        buf = np.frombuffer(memoryview(plane), np.uint8)[: geo.rows * plane.line_size]
        out.append(buf.reshape(geo.rows, plane.line_size)[:, :row_bytes].reshape(geo.shape).copy())
    return out


@pytest.fixture
def converter() -> FrameConverter:
    return FrameConverter()


@pytest.fixture
def publisher(request: pytest.FixtureRequest) -> Iterator[FramePublisher]:
    fmt: FrameFormat = request.param
    pub = FramePublisher("conv-test", fmt, slots=2)
    yield pub
    pub.close()


def _box_half(planes: list[np.ndarray]) -> list[np.ndarray]:
    """Each plane halved by averaging 2x2 blocks: the exact 2x downscale."""
    out = []
    for p in planes:
        h, w = p.shape[0] // 2, p.shape[1] // 2
        blocks = p[: 2 * h, : 2 * w].astype(np.float64).reshape(h, 2, w, 2)
        out.append(np.floor(blocks.mean(axis=(1, 3)) + 0.5).astype(np.uint8))
    return out


def _write(publisher: FramePublisher, converter: FrameConverter, frame: av.VideoFrame) -> list[np.ndarray]:
    """Convert ``frame`` into a slot that held something else; the slot's planes as written."""
    slot = publisher.begin()
    for plane in slot.planes:
        plane[...] = 7
    converter.write(frame, publisher.format, slot)
    written = [p.copy() for p in slot.planes]
    publisher.commit(pts=1)
    return written


def _swscale(frame: av.VideoFrame, fmt: FrameFormat) -> list[np.ndarray]:
    return _planes(frame.reformat(width=fmt.width, height=fmt.height, format=fmt.pixel_format.ffmpeg_name,
                                  interpolation="BILINEAR"), fmt)


HALF = [
    FrameFormat.packed_format(640, 360, PixelFormat.YUV420P),
    FrameFormat(640, 360, PixelFormat.YUV420P, strides=(704, 384, 384)),  # padded rows
]


@pytest.mark.parametrize("publisher", HALF, indirect=True, ids=["packed", "padded"])
def test_scaled_straight_into_the_slot(publisher: FramePublisher, converter: FrameConverter) -> None:
    """yuv420p 720p -> 360p: every plane is the exact area average of the decoder's plane."""
    frame = _scene(1280, 720, "yuv420p")
    source = _planes(frame, FrameFormat.packed_format(1280, 720, PixelFormat.YUV420P))
    for got, want in zip(_write(publisher, converter, frame), _box_half(source), strict=True):
        assert np.abs(got.astype(np.int16) - want.astype(np.int16)).max() <= 1


@pytest.mark.parametrize("publisher", [FrameFormat.packed_format(1280, 720, PixelFormat.YUV420P)],
                         indirect=True, ids=["same-size"])
def test_same_size_is_a_plain_copy(publisher: FramePublisher, converter: FrameConverter) -> None:
    frame = _scene(1280, 720, "yuv420p")
    want = _planes(frame, publisher.format)
    for got, ref in zip(_write(publisher, converter, frame), want, strict=True):
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("publisher", [FrameFormat.packed_format(1920, 1080, PixelFormat.YUV420P)],
                         indirect=True, ids=["upscaled"])
def test_upscaled_like_swscale(publisher: FramePublisher, converter: FrameConverter) -> None:
    frame = _scene(1280, 720, "yuv420p")
    for got, ref in zip(_write(publisher, converter, frame), _swscale(frame, publisher.format), strict=True):
        assert np.abs(got.astype(np.int16) - ref.astype(np.int16)).mean() < 3


@pytest.mark.parametrize("publisher", [FrameFormat.packed_format(640, 360, PixelFormat.BGR24),
                                       FrameFormat.packed_format(640, 360, PixelFormat.GRAY)],
                         indirect=True, ids=["bgr24", "gray"])
def test_other_formats_go_through_swscale(publisher: FramePublisher, converter: FrameConverter) -> None:
    """A format change (gray from yuv expands the video range) is swscale's: the same picture exactly."""
    frame = _scene(1280, 720, "yuv420p")
    for got, ref in zip(_write(publisher, converter, frame), _swscale(frame, publisher.format), strict=True):
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("publisher", HALF[:1], indirect=True, ids=["yuv420p"])
def test_odd_sized_source_and_every_slot(publisher: FramePublisher, converter: FrameConverter) -> None:
    """A camera with an odd picture size (chroma rounded up) and a full ring of slots reused."""
    fmt = publisher.format
    for i in range(5):
        frame = _scene(1279 - i * 2, 719, "yuv420p")
        slot = publisher.begin()
        converter.write(frame, fmt, slot)
        luma = slot.planes[0].copy()
        publisher.commit(pts=i)
        ref = _planes(frame.reformat(width=640, height=360, format="yuv420p"), fmt)[0]
        assert np.abs(luma.astype(np.int16) - ref.astype(np.int16)).mean() < 1.5


@pytest.mark.parametrize(
    ("configured", "size", "threads"),
    [
        (0, (1280, 720), 1),
        (0, (1920, 1080), 1),
        (0, (3840, 2160), 0),  # FFmpeg chooses: one core may not keep up
        (0, (0, 0), 0),  # size unknown until decoded
        (3, (1280, 720), 3),  # configured wins
    ],
)
def test_decode_threads(configured: int, size: tuple[int, int], threads: int) -> None:
    assert decode_threads(configured, *size) == threads
