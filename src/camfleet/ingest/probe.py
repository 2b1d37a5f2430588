"""``camfleet probe``: what a camera sends, measured from its first seconds."""

from __future__ import annotations

import time
from dataclasses import dataclass

from camfleet.redact import mask_url
from camfleet.urlkinds import SourceKind, source_kind

from .errors import ErrorKind, IngestError, classify
from .source import SourceOptions, open_source


@dataclass(frozen=True)
class ProbeResult:
    """What a probe saw: codec, size in pixels, rates in frames/s, keyframe interval.

    ``keyframe_interval`` is in frames (``keyframe_seconds`` in seconds), measured
    between the first keyframes seen (None if fewer than two arrived).
    """

    url: str
    codec: str
    profile: str | None
    width: int
    height: int
    pixel_format: str | None
    fps: float | None
    measured_fps: float | None
    keyframe_interval: int | None
    keyframe_seconds: float | None
    bitrate_kbps: float | None
    seconds: float


def probe(url: str, opts: SourceOptions | None = None, *, seconds: float = 5.0) -> ProbeResult:
    """Open ``url``, read up to ``seconds`` of packets (or three keyframes), and describe it."""
    opts = opts or SourceOptions()
    if source_kind(url) == SourceKind.SYNTHETIC:
        raise IngestError(ErrorKind.BAD_URL, url, "synthetic cameras need no probe")
    container = open_source(url, opts)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        keys: list[int] = []
        count = 0
        nbytes = 0
        first_t: float | None = None
        last_t: float | None = None
        start = time.monotonic()
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                count += 1
                nbytes += packet.size
                if packet.pts is not None and packet.time_base is not None:
                    t = float(packet.pts * packet.time_base)
                    first_t = t if first_t is None else first_t
                    last_t = t
                if packet.is_keyframe:
                    keys.append(count)
                if len(keys) >= 3 or time.monotonic() - start > seconds:
                    break
        except Exception as exc:
            if count == 0:
                raise classify(exc, url) from None
        span = (last_t - first_t) if first_t is not None and last_t is not None else 0.0
        measured = (count - 1) / span if span > 0 and count > 1 else None
        interval = keys[1] - keys[0] if len(keys) >= 2 else None
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        ref_fps = measured or fps
        return ProbeResult(
            url=mask_url(url),
            codec=ctx.name,
            profile=ctx.profile,
            width=ctx.width,
            height=ctx.height,
            pixel_format=ctx.pix_fmt,
            fps=fps,
            measured_fps=measured,
            keyframe_interval=interval,
            keyframe_seconds=interval / ref_fps if interval and ref_fps else None,
            bitrate_kbps=nbytes * 8 / span / 1000 if span > 0 else None,
            seconds=time.monotonic() - start,
        )
    finally:
        container.close()
