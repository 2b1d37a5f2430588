"""Opening camera sources with PyAV (FFmpeg), one connection per camera.

:func:`open_source` turns a URL and :class:`SourceOptions` into an open
container; every failure comes back as a classified, credential-free
:class:`~camfleet.ingest.errors.IngestError`.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal
from urllib.parse import urlsplit

import av
import av.container
from av.codec.hwaccel import HWAccel, hwdevices_available

from camfleet.redact import mask_url
from camfleet.urlkinds import SourceKind, source_kind

from .errors import ErrorKind, IngestError, classify
from .tls import TlsOptions, diagnose, uses_tls

log = logging.getLogger("camfleet.ingest")

HwAccel = Literal["cuda", "vaapi", "qsv"]


@dataclass(frozen=True)
class SourceOptions:
    """How to open and read one camera.

    Attributes:
        transport: RTSP transport, ``"tcp"`` or ``"udp"``.
        open_timeout: seconds allowed to connect and read the stream header.
        stall_timeout: seconds without a decoded frame before the stream is
            declared stalled and reconnected.
        loop: files only: start again at the end.
        realtime: files only: publish at the file's own frame rate instead of
            as fast as it decodes.
        hwaccel: decode on ``cuda``, ``vaapi`` or ``qsv`` when available (falls
            back to software, with a log line, when not).
        decode_threads: decoder threads (0: automatic: one up to 1080p, where a
            node's cameras spread over the cores; FFmpeg chooses above).
        tls: certificate verification of ``rtsps://`` and ``https://``
            cameras (on by default).
        corrupt_degraded_per_min: decoded frames per minute flagged corrupt
            (decoded from damaged data) past which the camera is reported
            degraded; 0 never reports it.
    """

    transport: Literal["tcp", "udp"] = "tcp"
    open_timeout: float = 10.0
    stall_timeout: float = 10.0
    loop: bool = False
    realtime: bool = False
    hwaccel: HwAccel | None = None
    decode_threads: int = 0
    tls: TlsOptions = field(default_factory=TlsOptions)
    corrupt_degraded_per_min: float = 30.0


@functools.cache
def hwaccel_usable(name: HwAccel) -> str | None:
    """None if ``name`` really decodes on this machine, else why not (checked once).

    A PyAV build may list a device type (it was compiled in) that has no
    driver or device here, so a tiny H.264 clip is decoded with it to be sure.
    """
    if name not in hwdevices_available():
        return f"this FFmpeg has no {name} support (it has: {', '.join(hwdevices_available()) or 'none'})"
    try:
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = 64, 64, "yuv420p"
        enc.time_base = Fraction(1, 25)
        enc.options = {"preset": "ultrafast"}
        packets = []
        for i in range(2):
            frame = av.VideoFrame(64, 64, "yuv420p")
            frame.pts = i
            packets += enc.encode(frame)
        packets += enc.encode(None)
        dec = av.CodecContext.create(
            "h264", "r", hwaccel=HWAccel(device_type=name, allow_software_fallback=False)
        )
        decoded = [f for p in packets for f in dec.decode(p)]
        if not decoded:
            return f"the {name} decoder returned no frame"
    except Exception as exc:
        return f"{name} device unusable ({type(exc).__name__}: {exc})"
    return None


def _hwaccel(name: HwAccel | None, url: str) -> Any:
    if name is None:
        return None
    why_not = hwaccel_usable(name)
    if why_not is not None:
        log.warning("%s: hardware decoding with %s unavailable (%s); decoding in software",
                    mask_url(url), name, why_not)
        return None
    return HWAccel(device_type=name, allow_software_fallback=True)


def ffmpeg_target(url: str) -> tuple[str, str | None, dict[str, str]]:
    """(target, FFmpeg format or None, FFmpeg options) for a non-synthetic URL."""
    kind = source_kind(url)
    if kind == SourceKind.RTSP:
        return url, None, {}
    if kind == SourceKind.HTTP:
        return url, None, {}
    if kind == SourceKind.V4L2:
        path = urlsplit(url).path if url.startswith("v4l2://") else url
        return path, "video4linux2", {}
    if kind == SourceKind.FILE:
        return (urlsplit(url).path if url.startswith("file://") else url), None, {}
    raise IngestError(ErrorKind.BAD_URL, url, "synthetic sources are generated, not opened")


def open_source(url: str, opts: SourceOptions) -> av.container.InputContainer:
    """Open ``url`` for demuxing; raises a classified :class:`IngestError`."""
    try:
        target, fmt, options = ffmpeg_target(url)
    except ValueError as exc:
        raise IngestError(ErrorKind.BAD_URL, url, str(exc)) from None
    kind = source_kind(url)
    # FFmpeg's own socket timeout (µs) ends a silent read; PyAV's timeouts
    # (open, read) back it up for demuxers that do not honour it.
    io_timeout_us = str(int(min(opts.open_timeout, opts.stall_timeout) * 1e6))
    # Live sources: no probe backlog (FFmpeg would otherwise hand over ~2 s of
    # buffered frames at once and keep every later frame that far behind).
    live = {"fflags": "nobuffer", "flags": "low_delay", "analyzeduration": "1000000",
            "probesize": "1000000"}
    if kind == SourceKind.RTSP:
        options |= live | {"rtsp_transport": opts.transport, "timeout": io_timeout_us}
    elif kind == SourceKind.HTTP:
        options |= live | {"timeout": io_timeout_us}
    if kind in (SourceKind.RTSP, SourceKind.HTTP):
        # Also for plain URLs: an http:// camera may redirect to https://, and the
        # options reach whatever TLS connection FFmpeg opens for this source.
        problem = opts.tls.ca_problem()
        if problem is not None:
            raise IngestError(ErrorKind.NO_SUCH_FILE, url, problem)
        options |= opts.tls.ffmpeg_options()
    started = time.monotonic()
    try:
        container = av.open(
            target,
            mode="r",
            format=fmt,
            options=options,
            timeout=(opts.open_timeout, opts.stall_timeout),
            hwaccel=_hwaccel(opts.hwaccel, url),
        )
    except Exception as exc:
        err = classify(exc, url)
        waited = time.monotonic() - started
        if err.kind == ErrorKind.OTHER and opts.tls.verify and uses_tls(url):
            # FFmpeg reports a refused certificate as a bare "Input/output error"
            why = diagnose(url, opts.tls, timeout=min(opts.open_timeout, 5.0))
            if why is not None:
                raise IngestError(ErrorKind.UNTRUSTED, url, why) from None
        if (err.kind == ErrorKind.CORRUPT and kind in (SourceKind.RTSP, SourceKind.HTTP)
                and waited >= 0.9 * min(opts.open_timeout, opts.stall_timeout)):
            # FFmpeg reports its own I/O timeout on a silent server as "invalid data"
            err = IngestError(ErrorKind.TIMEOUT, url, f"no answer within {waited:.1f} s")
        raise err from None
    if not container.streams.video:
        container.close()
        raise IngestError(ErrorKind.NO_VIDEO, url)
    return container
