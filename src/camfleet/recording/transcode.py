"""Recording a camera whose codec cannot go into MP4 as is: its decoded frames, encoded to H.264.

MJPEG, MPEG-4 part 2 and raw USB frames cannot be remuxed into the recorder's
MP4 segments. For those (``record.transcode: auto``, or every camera with
``always``) the recorder reads the frames the ingest process already decoded
from the camera's frame ring -- never a second connection to the camera --
encodes them with PyAV and hands the packets to the recorder's usual
segmenting, as if they had come from the packet ring.

The frame ring carries the *detect* stream: a transcoded recording has the
detect resolution and frame rate (``detect.width/height/fps``), not the
camera's own. The encoder is a hardware H.264 encoder when one opens on this
machine (NVENC, VAAPI, Quick Sync), else libx264 at a preset sized for the
CPU (:func:`software_preset`).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np

from camfleet import framebus
from camfleet.framebus import Frame, FrameFlags, Packet, PacketFlags, PixelFormat

log = logging.getLogger("camfleet.recording")

REMUXABLE = frozenset({"h264", "hevc"})
"""Codecs the recorder writes into MP4 as they are."""

TIME_BASE = Fraction(1, 90000)
"""Time base of the encoded packets (90 kHz, as RTP video)."""

HARDWARE_ENCODERS = ("h264_nvenc", "h264_qsv", "h264_vaapi", "h264_videotoolbox")
"""Hardware H.264 encoders tried, in order, before libx264."""

KEYFRAME_S = 1.0
"""Seconds between keyframes: segments are cut at keyframes, so this is their length's granularity."""

_POLL_S = 0.25
_RETRY_S = 5.0  # seconds before trying again to open an encoder that failed
_PIX_FMT = {PixelFormat.GRAY: "gray", PixelFormat.YUV420P: "yuv420p", PixelFormat.NV12: "nv12",
            PixelFormat.BGR24: "bgr24", PixelFormat.RGB24: "rgb24"}

OnPacket = Callable[[Packet, "tuple[str, bytes, tuple[int, int]] | None"], None]
"""The recorder's packet entry: a packet, and at keyframes the stream's (codec, extradata, time base)."""


def video_frame(frame: Frame) -> av.VideoFrame:
    """A private PyAV copy of a ring frame (any ring strides; the lease is checked after the copy)."""
    fmt = frame.format
    planes = frame.planes
    if fmt.pixel_format in (PixelFormat.GRAY, PixelFormat.BGR24, PixelFormat.RGB24):
        array = np.ascontiguousarray(planes[0])
    else:  # I420 (Y, U, V) or NV12 (Y, UV): the (H*3/2)xW block PyAV takes, without the rows' padding
        array = np.concatenate([np.ascontiguousarray(p).reshape(-1) for p in planes])
        array = array.reshape(fmt.height * 3 // 2, fmt.width)
    frame.check()  # the copy is only good if the lease held throughout
    return av.VideoFrame.from_ndarray(array, format=_PIX_FMT[fmt.pixel_format])


def can_remux(codec: str) -> bool:
    """Whether packets of ``codec`` (an FFmpeg codec name) go into an MP4 segment without re-encoding."""
    return codec in REMUXABLE


def software_preset(cores: int | None = None) -> str:
    """The libx264 preset for a machine with ``cores`` CPU cores (default: this one's).

    Recording must never starve analysis: few cores get the cheapest preset;
    more cores buy better compression at the same bitrate.
    """
    cores = cores if cores is not None else (os.cpu_count() or 1)
    if cores <= 4:
        return "ultrafast"
    if cores <= 8:
        return "superfast"
    return "veryfast"


@dataclass(frozen=True)
class EncoderChoice:
    """An H.264 encoder (FFmpeg name) and its options; ``hardware`` when it runs on a GPU/media engine."""

    name: str
    options: dict[str, str] = field(default_factory=dict)
    hardware: bool = False


def _opens(name: str) -> bool:
    """Whether encoder ``name`` exists and opens here (a listed hardware encoder may lack its device)."""
    try:
        ctx: Any = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 144, "yuv420p"
        ctx.time_base, ctx.framerate = TIME_BASE, Fraction(10)
        ctx.open()
    except Exception:  # any failure means "not usable here"
        return False
    return True


@functools.cache
def choose_encoder() -> EncoderChoice:
    """The H.264 encoder this machine records with: the first hardware one that opens, else libx264."""
    for name in HARDWARE_ENCODERS:
        if name in av.codecs_available and _opens(name):
            return EncoderChoice(name, {}, hardware=True)
    return EncoderChoice("libx264", {"preset": software_preset(), "tune": "zerolatency"})


class FrameEncoder:
    """Encodes decoded frames to H.264 packets in the recorder's packet shape.

    ``fps`` (frames per second of the ring) sets the keyframe interval
    (:data:`KEYFRAME_S`); timestamps come from each frame's capture time, in
    :data:`TIME_BASE` from the first frame, so a slow or uneven ring stays in
    step with the wall clock.
    """

    def __init__(self, width: int, height: int, fps: float, encoder: EncoderChoice | None = None) -> None:
        self.encoder = encoder or choose_encoder()
        self.width, self.height = width - width % 2, height - height % 2  # 4:2:0 needs even sizes
        ctx: Any = av.CodecContext.create(self.encoder.name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = self.width, self.height, "yuv420p"
        ctx.time_base, ctx.framerate = TIME_BASE, Fraction(max(round(fps), 1))
        ctx.gop_size = max(round(fps * KEYFRAME_S), 1)
        ctx.max_b_frames = 0  # dts == pts: packets leave in capture order, as the packet ring's
        ctx.flags |= av.codec.context.Flags.global_header  # SPS/PPS in extradata, as a camera's stream
        ctx.options = dict(self.encoder.options)
        ctx.open()
        self._ctx = ctx
        self._origin_ns: int | None = None
        self._seq = 0
        self._last_pts = -1

    @property
    def extradata(self) -> bytes:
        """The encoder's stream header (SPS/PPS)."""
        return bytes(self._ctx.extradata or b"")

    def encode(self, frame: Frame) -> list[Packet]:
        """Encode one ring frame (copied out of the ring before this returns); returns the packets ready."""
        if self._origin_ns is None:
            self._origin_ns = frame.capture_ns
        pts = round((frame.capture_ns - self._origin_ns) * 90000 / 1e9)
        pts = max(pts, self._last_pts + 1)  # strictly increasing, whatever the capture clock did
        self._last_pts = pts
        image = video_frame(frame)
        if (image.width, image.height, image.format.name) != (self.width, self.height, "yuv420p"):
            image = image.reformat(width=self.width, height=self.height, format="yuv420p")
        image.pts, image.time_base = pts, TIME_BASE
        gap = bool(frame.flags & FrameFlags.DISCONTINUITY)
        return self._packets(self._ctx.encode(image), discontinuity=gap)

    def flush(self) -> list[Packet]:
        """The packets the encoder still holds (at the end of the stream)."""
        return self._packets(self._ctx.encode(None), discontinuity=False)

    def _packets(self, encoded: list[Any], *, discontinuity: bool) -> list[Packet]:
        assert self._origin_ns is not None
        out = []
        for p in encoded:
            self._seq += 1
            flags = PacketFlags.KEY if p.is_keyframe else PacketFlags.NONE
            if discontinuity:
                flags |= PacketFlags.DISCONTINUITY
            pts = int(p.pts)
            dts = int(p.dts) if p.dts is not None else pts
            out.append(Packet(seq=self._seq, data=bytes(p), pts=pts, dts=dts, duration=int(p.duration or 0),
                              flags=flags, capture_ns=self._origin_ns + round(pts * 1e9 / 90000)))
        return out


class FrameRingTranscoder:
    """Feeds a recorder from the camera's frame ring: every frame, encoded, as if from the packet ring.

    ``on_packet`` is the recorder's packet entry; ``fps`` the ring's frame rate
    (the camera's ``detect.fps``); ``heartbeat`` is called at least every
    0.25 s. :attr:`error` says why it cannot record (no encoder), else None.
    """

    def __init__(self, camera: str, on_packet: OnPacket, *, fps: float,
                 heartbeat: Callable[[], None] | None = None, connect_timeout: float = 1.0) -> None:
        self.camera = camera
        self.on_packet = on_packet
        self.fps = fps
        self.connect_timeout = connect_timeout
        self._heartbeat = heartbeat or (lambda: None)
        self.error: str | None = None
        self.frames = 0

    def run(self, stop: threading.Event) -> None:
        """Read and encode until ``stop`` is set or the ring's publisher goes (the caller re-runs it)."""
        try:
            sub = framebus.subscribe(self.camera, mode="sequential", name=f"recorder-{self.camera}",
                                     connect_timeout=self.connect_timeout)
        except (framebus.NotFound, framebus.PublisherGone, framebus.SegmentError):
            return  # not published (yet): connect_timeout bounded the wait
        except (framebus.DuplicateSubscriber, framebus.SubscriberLimit):
            stop.wait(_POLL_S)  # a killed predecessor's entry is reclaimed within a second
            return
        encoder: FrameEncoder | None = None
        with sub:
            while not stop.is_set():
                self._heartbeat()
                try:
                    with sub.next(timeout=_POLL_S) as frame:
                        if encoder is None or (encoder.width, encoder.height) != (
                                frame.format.width - frame.format.width % 2,
                                frame.format.height - frame.format.height % 2):
                            encoder = self._encoder(frame, encoder)
                            if encoder is None:
                                break
                        packets = encoder.encode(frame)
                except framebus.FrameTimeout:
                    continue
                except framebus.Overrun:
                    continue  # the encoder fell behind the ring: the recorder sees a timestamp gap
                except (framebus.PublisherGone, framebus.FormatChanged, framebus.LeaseRevoked,
                        framebus.Evicted):
                    break  # the ingest process restarts or changed the stream: subscribe again
                self.frames += 1
                self._deliver(encoder, packets)
        if encoder is not None:
            self._deliver(encoder, encoder.flush())
        elif self.error is not None:
            stop.wait(_RETRY_S)  # no encoder: no busy loop of attempts (the error is reported meanwhile)

    def _encoder(self, frame: Frame, old: FrameEncoder | None) -> FrameEncoder | None:
        if old is not None:
            self._deliver(old, old.flush())
        try:
            encoder = FrameEncoder(frame.format.width, frame.format.height, self.fps)
        except Exception as exc:  # any encoder failure leaves the camera unrecorded
            error = f"cannot open an H.264 encoder: {exc}"
            if error != self.error:
                log.error("recorder %s: %s", self.camera, error)
            self.error = error
            return None
        self.error = None
        log.info("recorder %s: transcoding the detect stream to H.264 %dx%d with %s%s", self.camera,
                 encoder.width, encoder.height, encoder.encoder.name,
                 f" ({encoder.encoder.options['preset']})" if "preset" in encoder.encoder.options else "")
        return encoder

    def _deliver(self, encoder: FrameEncoder, packets: list[Packet]) -> None:
        for packet in packets:
            fmt = ("h264", encoder.extradata, (TIME_BASE.numerator, TIME_BASE.denominator))
            self.on_packet(packet, fmt if packet.is_key else None)
