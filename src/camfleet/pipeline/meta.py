"""What the pipeline saw in each analysed frame, published for the live overlay.

One small JSON record per analysed frame goes to a per-camera packet ring
(``framebus``, key :func:`meta_ring_key`): the tracked objects (box, label,
score, track id), the motion regions and the frame's ring sequence number,
pts and capture time. Boxes are normalised to 0..1 of the frame, so a viewer
draws them over a picture of any size. The ring never blocks the publisher
(a reader that falls behind just misses records) and needs no server: the API
process subscribes to it like any other ring consumer.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from camfleet.framebus import PacketPublisher
from camfleet.framebus.errors import FramebusError
from camfleet.framebus.layout import validate_key

from .context import FrameContext

log = logging.getLogger("camfleet.pipeline")

_MAX_KEY = 63
_HASH_HEX = 10
META_CODEC = "camfleet-meta-json"
"""The ring's codec name: one UTF-8 JSON object per packet."""
META_CAPACITY = 256 * 1024
"""Bytes of a meta ring's payload buffer (a record is well under 4 KiB; a quarter is the limit)."""
META_INDEX = 64
"""Records a meta ring addresses at once (a few seconds at typical detect rates)."""
MAX_OBJECTS = 100
"""Objects (and motion regions) kept per record: a frame full of boxes is cut, not refused."""


def meta_ring_key(camera: str) -> str:
    """The key of ``camera``'s metadata ring: ``mt-CAMERA``, cut and hashed when that is too long."""
    key = f"mt-{camera}"
    if len(key) > _MAX_KEY:
        digest = hashlib.blake2b(key.encode(), digest_size=_HASH_HEX // 2).hexdigest()
        key = f"{key[: _MAX_KEY - len(digest) - 1]}-{digest}"
    return validate_key(key)


def _norm(box: tuple[float, float, float, float], w: int, h: int) -> list[float]:
    x0, y0, x1, y1 = box
    return [round(min(max(x0 / w, 0.0), 1.0), 4), round(min(max(y0 / h, 0.0), 1.0), 4),
            round(min(max(x1 / w, 0.0), 1.0), 4), round(min(max(y1 / h, 0.0), 1.0), 4)]


def frame_record(ctx: FrameContext) -> dict[str, Any]:
    """The overlay record of one analysed frame (boxes normalised to 0..1; ``t`` in epoch seconds).

    Tracks that ended on this frame are left out: the overlay shows what is there.
    """
    w, h = max(ctx.width, 1), max(ctx.height, 1)
    objects = [
        {"id": t.track_id, "label": t.label, "score": round(float(t.score), 3), "box": _norm(t.box, w, h),
         "stationary": t.stationary, "zones": sorted(t.zones)}
        for t in ctx.tracks[:MAX_OBJECTS] if not t.ended
    ]
    return {
        "seq": ctx.seq, "pts": ctx.pts, "t": ctx.capture_ns / 1e9 if ctx.capture_ns else None,
        "w": ctx.width, "h": ctx.height, "objects": objects,
        "motion": [_norm(b, w, h) for b in ctx.motion[:MAX_OBJECTS]],
    }


class MetaPublisher:
    """Publishes :func:`frame_record` of each analysed frame to the camera's meta ring.

    Never raises from :meth:`publish`: the overlay is an aid, the pipeline's
    work goes on without it (the first failure is logged).
    """

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._pub: PacketPublisher | None = None
        self._failed = False
        try:
            self._pub = PacketPublisher(meta_ring_key(camera), META_CODEC, capacity=META_CAPACITY,
                                        index_size=META_INDEX, time_base=(1, 90000))
        except FramebusError as exc:
            log.warning("camera %s: no live overlay metadata (%s)", camera, exc)

    def publish(self, ctx: FrameContext) -> None:
        """Publish the record of ``ctx`` (every record is a key: a new reader starts at the newest)."""
        if self._pub is None:
            return
        try:
            data = json.dumps(frame_record(ctx), separators=(",", ":")).encode()
            self._pub.publish(data, pts=ctx.pts, key=True, capture_ns=ctx.capture_ns or None)
        except Exception as exc:
            if not self._failed:
                self._failed = True
                log.warning("camera %s: publishing overlay metadata failed (%s)", self.camera, exc)

    def close(self) -> None:
        """Remove the ring (its readers see the publisher gone)."""
        if self._pub is not None:
            self._pub.close()
            self._pub = None
