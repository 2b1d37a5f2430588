"""``synthetic://`` cameras: a scene of moving photographs rendered in-process (see :mod:`.scene`).

``synthetic://NAME?width=1280&height=720&fps=15&seed=0&objects=person,cat,motorcycle&gop=30``
renders :class:`camfleet.ingest.scene.Scene` frames in real time and encodes them with
libx264, so a synthetic camera feeds both rings exactly like a real one (no
decode is needed: the rendered frame is published as is).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs, urlsplit

import av

from .errors import ErrorKind, IngestError

_TIME_BASE = Fraction(1, 90000)


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic camera, parsed from its URL (sizes in pixels)."""

    name: str
    width: int = 1280
    height: int = 720
    fps: float = 15.0
    seed: int = 0
    objects: tuple[str, ...] = ("person", "cat", "motorcycle")
    gop: int = 30
    bitrate_kbps: int = 1000

    @classmethod
    def parse(cls, url: str) -> SyntheticSpec:
        """Parse ``synthetic://NAME?key=value...``; raises :class:`IngestError` on bad values."""
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        allowed = {"width", "height", "fps", "seed", "objects", "gop", "bitrate"}
        unknown = set(query) - allowed
        if unknown:
            raise IngestError(
                ErrorKind.BAD_URL, url, f"unknown parameter(s) {sorted(unknown)}; use {sorted(allowed)}"
            )
        try:
            spec = cls(
                name=parts.netloc or "synthetic",
                width=int(query.get("width", 1280)),
                height=int(query.get("height", 720)),
                fps=float(query.get("fps", 15)),
                seed=int(query.get("seed", 0)),
                objects=tuple(o for o in query.get("objects", "person,cat,motorcycle").split(",") if o),
                gop=int(query.get("gop", 30)),
                bitrate_kbps=int(query.get("bitrate", 1000)),
            )
        except ValueError as exc:
            raise IngestError(ErrorKind.BAD_URL, url, str(exc)) from None
        if not (16 <= spec.width <= 7680 and 16 <= spec.height <= 4320 and 0 < spec.fps <= 120):
            raise IngestError(ErrorKind.BAD_URL, url, "size must be 16..7680x16..4320 and fps 0..120")
        return spec


class SyntheticSource:
    """Renders, encodes and paces a synthetic camera in real time."""

    codec_name = "h264"

    def __init__(self, url: str) -> None:
        # scikit-image loads only when a synthetic camera actually runs
        from .scene import Scene  # noqa: PLC0415

        self.spec = SyntheticSpec.parse(url)
        s = self.spec
        width, height = s.width - s.width % 2, s.height - s.height % 2
        self.scene = Scene(width=width, height=height, seed=s.seed, objects=s.objects)
        self.width, self.height = width, height
        self.time_base = _TIME_BASE
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height = width, height
        enc.pix_fmt = "yuv420p"
        enc.time_base = _TIME_BASE
        enc.framerate = Fraction(s.fps).limit_denominator(1000)
        enc.gop_size = s.gop
        enc.bit_rate = s.bitrate_kbps * 1000
        enc.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
        enc.open()
        self._encoder = enc
        self.extradata = bytes(enc.extradata or b"")

    def run(self, stop: threading.Event) -> Iterator[tuple[list[av.Packet[Any]], av.VideoFrame]]:
        """Yield (encoded packets, rendered frame) at the camera's rate until ``stop``."""
        period = 1.0 / self.spec.fps
        start = time.monotonic()
        index = 0
        while not stop.is_set():
            due = start + index * period
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            if time.monotonic() - due > 5 * period:
                # fell behind (CPU starved): skip ahead instead of bursting
                index = int((time.monotonic() - start) / period)
            frame = av.VideoFrame.from_ndarray(self.scene.render_i420(index), format="yuv420p")
            frame.pts = round(index * 90000 / self.spec.fps)
            frame.time_base = _TIME_BASE
            packets = list(self._encoder.encode(frame))
            yield packets, frame
            index += 1


