"""How much shared memory a ring takes: the one home of ring sizing, for publishers and for checks.

The byte counts are those of the segment files the rings create (header,
index, lease table and page-aligned payload), so a start-up check can say
exactly whether ``/dev/shm`` has room before any process starts.
"""

from __future__ import annotations

from typing import Final

from .format import FrameFormat, PixelFormat
from .layout import KIND_FRAMES, KIND_PACKETS, PAGE, Offsets

PACKET_INDEX_SIZE: Final = 1024
"""Packets a packet ring addresses at once (its index entries), unless told otherwise."""
PACKET_CAPACITY: Final = 8 * 2**20
"""Bytes of a packet ring's payload buffer, unless told otherwise."""


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def frame_ring_bytes(width: int, height: int, pixel_format: PixelFormat | str, slots: int) -> int:
    """Bytes of the segment file of a frame ring of ``slots`` packed ``width``x``height`` frames."""
    fmt = FrameFormat.packed_format(width, height, pixel_format)
    return Offsets.compute(KIND_FRAMES, slots).payload + slots * _align(fmt.frame_bytes, PAGE)


def packet_ring_bytes(capacity: int = PACKET_CAPACITY, index_size: int = PACKET_INDEX_SIZE) -> int:
    """Bytes of the segment file of a packet ring: a ``capacity``-byte buffer, ``index_size`` entries."""
    return Offsets.compute(KIND_PACKETS, index_size).payload + _align(capacity, PAGE)
