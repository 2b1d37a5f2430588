"""framebus: shared-memory frame and packet rings, one publisher, many subscribers.

Frames are decoded once and read by every consumer through zero-copy numpy
views of ``/dev/shm``; encoded packets travel on a second ring for recording.

Publishing::

    from camfleet.framebus import FrameFormat, FramePublisher

    with FramePublisher("cam1", FrameFormat(1280, 720, "yuv420p"), slots=8) as pub:
        frame = pub.begin()                    # writable views into shared memory
        frame.planes[0][:] = y_plane           # ... or pub.publish(array, pts=...)
        pub.commit(pts=90000)

Subscribing, with the reconnect pattern that survives publisher restarts::

    from camfleet import framebus

    while True:
        try:
            with framebus.subscribe("cam1", mode="sequential", name="detector",
                                    connect_timeout=30) as sub:
                for frame in sub:              # each frame is released as the loop moves on
                    process(frame.array)      # zero-copy, read-only
        except framebus.PublisherGone:
            continue                           # the publisher died or restarted: subscribe again
        except framebus.Overrun as exc:
            log.warning("lost %d frames", exc.lost)   # sequential mode fell behind

See :mod:`camfleet.framebus.frame_ring` for the guarantees and the
thread-safety contract, and :mod:`camfleet.framebus.packet_ring` for packets.
"""

from __future__ import annotations

from .errors import (
    AlreadyRunning,
    DuplicateSubscriber,
    Evicted,
    FormatChanged,
    FramebusError,
    FrameTimeout,
    InvalidFormat,
    InvalidKey,
    LayoutMismatch,
    LeaseLimit,
    LeaseRevoked,
    NotFound,
    NotOwner,
    Overrun,
    PublisherGone,
    SegmentError,
    SubscriberLimit,
)
from .format import FrameFormat, PixelFormat
from .frame_ring import (
    Frame,
    FrameFlags,
    FramePublisher,
    FrameSubscriber,
    Mode,
    Policy,
    PublisherStats,
    SubscriberStats,
    WritableFrame,
)
from .packet_ring import (
    Packet,
    PacketFlags,
    PacketPublisher,
    PacketSubscriber,
    subscribe_packets,
)
from .segment import shm_dir
from .sizes import PACKET_CAPACITY, PACKET_INDEX_SIZE, frame_ring_bytes, packet_ring_bytes


def subscribe(
    key: str,
    mode: Mode = "latest",
    name: str | None = None,
    *,
    max_held: int = 1,
    connect_timeout: float = 0.0,
) -> FrameSubscriber:
    """Subscribe to the frame ring ``key``.

    Args:
        key: ring name.
        mode: ``"latest"`` (newest frame only; skipped frames are counted) or
            ``"sequential"`` (every frame in order; :class:`Overrun` when the
            publisher overwrote frames not yet read).
        name: unique name among the ring's live subscribers (default: derived
            from the pid).
        max_held: frames this subscriber may hold at once (reserved in the ring).
        connect_timeout: seconds to wait for a live publisher to appear.

    Raises:
        NotFound: no live publisher within ``connect_timeout``.
        DuplicateSubscriber: a live subscriber already uses ``name``.
        SubscriberLimit: no entry or no slots left to lease.
        SegmentError: the segment is foreign, truncated, of another layout
            version or of another user.
    """
    return FrameSubscriber(
        key, mode=mode, name=name, max_held=max_held, connect_timeout=connect_timeout
    )


__all__ = [
    "AlreadyRunning",
    "DuplicateSubscriber",
    "Evicted",
    "FormatChanged",
    "Frame",
    "FrameFlags",
    "FrameFormat",
    "FramePublisher",
    "FrameSubscriber",
    "FrameTimeout",
    "FramebusError",
    "InvalidFormat",
    "InvalidKey",
    "LayoutMismatch",
    "LeaseLimit",
    "LeaseRevoked",
    "Mode",
    "NotFound",
    "NotOwner",
    "PACKET_CAPACITY",
    "PACKET_INDEX_SIZE",
    "Overrun",
    "Packet",
    "PacketFlags",
    "PacketPublisher",
    "PacketSubscriber",
    "PixelFormat",
    "Policy",
    "PublisherGone",
    "PublisherStats",
    "SegmentError",
    "SubscriberLimit",
    "SubscriberStats",
    "WritableFrame",
    "frame_ring_bytes",
    "packet_ring_bytes",
    "shm_dir",
    "subscribe",
    "subscribe_packets",
]
