"""Frame formats: pixel layouts and the geometry of their planes in a slot."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import InvalidFormat

_ALIGN = 64  # default row alignment in bytes; keeps SIMD loads aligned


class PixelFormat(enum.IntEnum):
    """Pixel layouts a frame ring can carry (FFmpeg names, 8 bits per sample)."""

    GRAY = 1
    YUV420P = 2
    NV12 = 3
    BGR24 = 4
    RGB24 = 5

    @classmethod
    def parse(cls, value: PixelFormat | str) -> PixelFormat:
        """Return the format named ``value`` (case-insensitive FFmpeg name)."""
        if isinstance(value, PixelFormat):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            names = ", ".join(m.name.lower() for m in cls)
            raise InvalidFormat(f"unknown pixel format {value!r}; expected one of {names}") from None

    @property
    def ffmpeg_name(self) -> str:
        """The FFmpeg / PyAV name of this format, e.g. ``"yuv420p"``."""
        return self.name.lower()


@dataclass(frozen=True)
class PlaneGeometry:
    """Where one plane lies inside a slot and how to view it.

    ``shape`` is the numpy shape (rows, columns[, channels]); ``stride`` is the
    distance between rows in bytes; ``offset`` is relative to the slot start.
    """

    offset: int
    rows: int
    stride: int
    shape: tuple[int, ...]
    item_strides: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes the plane occupies, padding included."""
        return self.rows * self.stride


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


@dataclass(frozen=True)
class FrameFormat:
    """Geometry of the frames in a ring.

    Args:
        width: frame width in pixels.
        height: frame height in pixels.
        pixel_format: one of :class:`PixelFormat` or its FFmpeg name.
        strides: bytes per row of each plane; None picks the row size rounded
            up to 64 bytes. Must be at least the row size of each plane.

    Example:
        >>> fmt = FrameFormat(1920, 1080, "yuv420p")
        >>> [p.shape for p in fmt.planes]
        [(1080, 1920), (540, 960), (540, 960)]
    """

    width: int
    height: int
    pixel_format: PixelFormat
    strides: tuple[int, ...]

    def __init__(
        self,
        width: int,
        height: int,
        pixel_format: PixelFormat | str = PixelFormat.YUV420P,
        strides: tuple[int, ...] | list[int] | None = None,
    ) -> None:
        pix = PixelFormat.parse(pixel_format)
        if not (0 < width <= 16384 and 0 < height <= 16384):
            raise InvalidFormat(f"frame size {width}x{height} out of range (1..16384)")
        if pix in (PixelFormat.YUV420P, PixelFormat.NV12) and (width % 2 or height % 2):
            raise InvalidFormat(f"{pix.ffmpeg_name} needs an even width and height, got {width}x{height}")
        row_bytes = _row_bytes(pix, width)
        if strides is None:
            strides = tuple(_align(b, _ALIGN) for b in row_bytes)
        strides = tuple(int(s) for s in strides)
        if len(strides) != len(row_bytes):
            raise InvalidFormat(
                f"{pix.ffmpeg_name} has {len(row_bytes)} plane(s), got {len(strides)} stride(s)"
            )
        for i, (stride, need) in enumerate(zip(strides, row_bytes, strict=True)):
            if stride < need:
                raise InvalidFormat(f"plane {i} stride {stride} is smaller than its row ({need} bytes)")
        object.__setattr__(self, "width", int(width))
        object.__setattr__(self, "height", int(height))
        object.__setattr__(self, "pixel_format", pix)
        object.__setattr__(self, "strides", strides)

    @property
    def planes(self) -> tuple[PlaneGeometry, ...]:
        """The planes of one frame, in FFmpeg order, packed one after another."""
        w, h, pix = self.width, self.height, self.pixel_format
        out: list[PlaneGeometry] = []
        shape: tuple[int, ...]
        items: tuple[int, ...]
        offset = 0
        for i, stride in enumerate(self.strides):
            if pix in (PixelFormat.BGR24, PixelFormat.RGB24):
                rows, shape, items = h, (h, w, 3), (stride, 3, 1)
            elif i == 0:
                rows, shape, items = h, (h, w), (stride, 1)
            elif pix == PixelFormat.NV12:
                rows, shape, items = h // 2, (h // 2, w // 2, 2), (stride, 2, 1)
            else:
                rows, shape, items = h // 2, (h // 2, w // 2), (stride, 1)
            out.append(PlaneGeometry(offset, rows, stride, shape, items))
            offset += rows * stride
        return tuple(out)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame with all its planes and row padding."""
        return sum(p.nbytes for p in self.planes)

    @property
    def packed(self) -> bool:
        """True when no plane has row padding (strides equal row sizes)."""
        return all(
            s == b for s, b in zip(self.strides, _row_bytes(self.pixel_format, self.width), strict=True)
        )

    @classmethod
    def packed_format(cls, width: int, height: int, pixel_format: PixelFormat | str) -> FrameFormat:
        """Return the format with no row padding (the layout FFmpeg/OpenCV tools expect)."""
        pix = PixelFormat.parse(pixel_format)
        return cls(width, height, pix, _row_bytes(pix, width))

    def describe(self) -> str:
        """Short human description, e.g. ``1920x1080 yuv420p``."""
        return f"{self.width}x{self.height} {self.pixel_format.ffmpeg_name}"


def _row_bytes(pix: PixelFormat, width: int) -> tuple[int, ...]:
    if pix == PixelFormat.GRAY:
        return (width,)
    if pix == PixelFormat.YUV420P:
        return (width, width // 2, width // 2)
    if pix == PixelFormat.NV12:
        return (width, width)
    return (width * 3,)
