"""The ingest loop of one camera: connect, publish packets then frames, heal.

States: connecting → streaming → (stalled) → backoff → connecting … → stopped.
The loop never dies on a camera failure: every error is classified, counted,
logged with the URL masked, and followed by a reconnect after an exponential,
jittered back-off. A watchdog thread declares a stall when no frame arrived for
``stall_timeout`` seconds; FFmpeg's own read timeout then ends the blocked read.

Encoded packets go to the packet ring *before* decoding (recording needs no
decode); decoded frames go to the frame ring converted, scaled and
rate-limited. A resolution change re-creates the frame ring, and its
subscribers get :class:`~camfleet.framebus.FormatChanged`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.container

from camfleet.framebus import (
    AlreadyRunning,
    FrameFlags,
    FrameFormat,
    FramePublisher,
    PacketPublisher,
)
from camfleet.redact import mask_url
from camfleet.urlkinds import SourceKind, source_kind

from .backoff import Backoff
from .convert import FrameConverter, OutputSpec, RateLimiter
from .corruption import CorruptionMeter
from .errors import ErrorKind, IngestError, classify
from .packet_sizing import GROW_FACTOR, REMEASURE_S, RING_SECONDS, RateProbe, ring_capacity
from .size_gate import SizeChangeGate
from .source import SourceOptions, open_source
from .status import IngestState, IngestStatus, StateTracker
from .synthetic import SyntheticSource

log = logging.getLogger("camfleet.ingest")

SINGLE_THREAD_MAX_PIXELS = 1920 * 1088
"""Largest picture (pixels) decoded on one thread when ``decode_threads`` is 0 (automatic).

A node runs one decoder per camera, so cameras already spread over the cores; FFmpeg's own
threads (frame threading: a thread and a picture buffer each, one frame of delay per thread)
cost more CPU per frame (~10-20 % measured at 720p) and memory. Above 1080p one core may not keep
up with a fast camera, so FFmpeg chooses there."""


def decode_threads(configured: int, width: int, height: int) -> int:
    """Decoder threads for a ``width`` x ``height`` stream (0: size unknown); ``configured`` 0: automatic."""
    if configured:
        return configured
    if 0 < width * height <= SINGLE_THREAD_MAX_PIXELS:
        return 1
    return 0  # FFmpeg chooses (one per core, plus one)


@dataclass(frozen=True)
class IngestConfig:
    """Everything one ingest loop needs.

    Attributes:
        url: camera URL (credentials allowed; they are never logged).
        key: ring key the camera publishes under.
        source: how to open and read the camera.
        output: pixel format, scaling and frame-rate limit of the frame ring.
        backoff_initial: first reconnect delay, seconds.
        backoff_max: longest reconnect delay, seconds.
        ring_slots: frame ring slots.
        packet_capacity: the largest packet ring buffer, bytes.
        packet_seconds: seconds of the stream the packet ring holds: the ring is created after
            the stream's first seconds, sized from their measured rate
            (:mod:`camfleet.ingest.packet_sizing`), at most ``packet_capacity``; None: a ring of
            ``packet_capacity`` bytes from the start.
    """

    url: str
    key: str
    source: SourceOptions = field(default_factory=SourceOptions)
    output: OutputSpec = field(default_factory=OutputSpec)
    backoff_initial: float = 1.0
    backoff_max: float = 30.0
    ring_slots: int = 8
    packet_capacity: int = 8 * 2**20
    packet_seconds: float | None = RING_SECONDS


StateListener = Callable[[IngestState, "IngestError | None"], None]


class IngestWorker:
    """Runs one camera's ingest loop in the calling thread until stopped.

    Example:
        >>> import threading
        >>> cfg = IngestConfig(url="synthetic://cam?width=320&height=180", key="doc-ingest")
        >>> stop = threading.Event()
        >>> worker = IngestWorker(cfg)
        >>> # worker.run(stop) blocks; call stop.set() from elsewhere to end it
    """

    def __init__(self, config: IngestConfig, on_state: StateListener | None = None) -> None:
        self.config = config
        self._on_state = on_state
        self._kind = source_kind(config.url)
        self._tracker = StateTracker()
        self._lock = threading.Lock()
        self._backoff = Backoff(
            initial=config.backoff_initial, maximum=max(config.backoff_max, config.backoff_initial)
        )
        self._packets: PacketPublisher | None = None
        # packets read while the stream's rate is measured, published once the ring exists
        self._probe = RateProbe() if config.packet_seconds is not None else None
        self._backlog: list[tuple[bytes, dict[str, Any], int]] = []
        self._stream: tuple[str, bytes, tuple[int, int]] | None = None
        self._grow_to = 0  # bytes: a later window of the stream needs a bigger ring (made at a keyframe)
        self._grow_rate: float | None = None
        self._time_base = 0.0
        self._frames: FramePublisher | None = None
        self._converter = FrameConverter()
        self._limiter = RateLimiter(config.output.fps)
        self._last_frame = time.monotonic()
        self._frame_count = 0
        self._decoded_count = 0
        self._packet_count = 0
        self._corruption = CorruptionMeter(config.source.corrupt_degraded_per_min)
        self._degraded: str | None = None  # last reported, for logging transitions
        self._degraded_checked = 0.0
        self._fps = 0.0
        self._fps_t = 0.0
        self._codec = ""
        self._size = (0, 0)
        self._size_gate = SizeChangeGate()
        self._discontinuity = False
        self.fatal: IngestError | None = None

    # ---- state ------------------------------------------------------------
    @property
    def ended(self) -> bool:
        """Whether the loop returned because its file (without ``loop``) ended: do not run it again."""
        return self._tracker.state == IngestState.ENDED

    def _enter(self, state: IngestState, error: IngestError | None = None) -> None:
        with self._lock:
            if error is not None:
                self._tracker.error(error.kind.value, str(error))
            changed = self._tracker.enter(state)
        if changed:
            where = f"camera {self.config.key} ({mask_url(self.config.url)})"
            if error is not None:
                log.warning("%s: %s: %s", where, state.value, error)
            else:
                log.info("%s: %s", where, state.value)
            if self._on_state is not None:
                self._on_state(state, error)

    def status(self) -> IngestStatus:
        """A snapshot of the loop's state and counters."""
        t = self._tracker
        with self._lock:
            return IngestStatus(
                state=t.state,
                seconds_in_state=t.seconds_in_state,
                reconnects_last_hour=t.reconnects_last_hour,
                stalls_last_hour=t.stalls_last_hour,
                last_error=t.last_error,
                last_error_kind=t.last_error_kind,
                frames=self._frame_count,
                decoded=self._decoded_count,
                packets=self._packet_count,
                decode_fps=self._fps,
                width=self._size[0],
                height=self._size[1],
                codec=self._codec,
                corrupt_frames=self._corruption.corrupt_frames,
                rejected_packets=self._corruption.rejected_packets,
                corrupt_fps=self._corruption.per_second,
                corrupt_per_min=self._corruption.per_minute,
                degraded=self._corruption.degraded(),
            )

    @property
    def corrupt_packets(self) -> int:
        """Packets the decoder rejected (decoding went on)."""
        return self._corruption.rejected_packets

    # ---- main loop ----------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Ingest until ``stop`` is set. Raises only for a ring key owned by another process."""
        cfg = self.config
        try:
            if self._probe is None:
                self._packets = PacketPublisher(cfg.key, "", capacity=cfg.packet_capacity)
        except AlreadyRunning as exc:
            self.fatal = IngestError(ErrorKind.OTHER, cfg.url, f"ring key {cfg.key!r}: {exc}")
            raise self.fatal from None
        watchdog = threading.Thread(target=self._watch_stalls, args=(stop,), daemon=True,
                                    name=f"camfleet-stall-{cfg.key}")
        watchdog.start()
        try:
            while not stop.is_set():
                self._enter(IngestState.CONNECTING)
                try:
                    self._session(stop)
                except AlreadyRunning as exc:  # the packet ring, created once the stream's rate is known
                    self.fatal = IngestError(ErrorKind.OTHER, cfg.url, f"ring key {cfg.key!r}: {exc}")
                    raise self.fatal from None
                except IngestError as exc:
                    if stop.is_set():
                        break
                    if exc.kind == ErrorKind.ENDED and self._kind == SourceKind.FILE:
                        if not cfg.source.loop:
                            log.info("camera %s: end of file", cfg.key)
                            self._enter(IngestState.ENDED)
                            break
                        self._discontinuity = True
                        continue  # a looping file starts again at once
                    self._enter(
                        IngestState.STALLED if exc.kind == ErrorKind.STALLED else IngestState.BACKOFF,
                        exc,
                    )
                    self._enter(IngestState.BACKOFF)
                    delay = self._backoff.next_delay()
                    log.info("camera %s: reconnecting in %.1f s", cfg.key, delay)
                    stop.wait(delay)
                    self._discontinuity = True
        finally:
            if self._tracker.state != IngestState.ENDED:  # an ended file stays ended: its caller must know
                self._enter(IngestState.STOPPED)
            stop.set()
            watchdog.join(timeout=2)
            if self._frames is not None:
                self._frames.close()
            if self._packets is not None:
                self._packets.close()

    def _watch_stalls(self, stop: threading.Event) -> None:
        timeout = self.config.source.stall_timeout
        while not stop.wait(min(timeout / 4, 0.25)):
            if self._tracker.state == IngestState.STREAMING and time.monotonic() - self._last_frame > timeout:
                err = IngestError(ErrorKind.STALLED, self.config.url, f"no frame for {timeout:g} s")
                self._enter(IngestState.STALLED, err)

    def _session(self, stop: threading.Event) -> None:
        if self._kind == SourceKind.SYNTHETIC:
            try:
                self._synthetic_session(stop)
            finally:
                self._flush_backlog()
            return
        container = open_source(self.config.url, self.config.source)
        try:
            self._container_session(container, stop)
        finally:
            with contextlib.suppress(Exception):
                container.close()
            self._flush_backlog()  # a stream shorter than the measurement: its packets are published
            self._log_degraded()  # a short damaged file may end before the once-a-second check

    # ---- one connection -----------------------------------------------------
    def _container_session(self, container: av.container.InputContainer, stop: threading.Event) -> None:
        cfg = self.config
        stream = container.streams.video[0]
        ctx = stream.codec_context
        threads = decode_threads(cfg.source.decode_threads, ctx.width, ctx.height)
        if threads != 1:
            stream.thread_type = "AUTO"
        ctx.thread_count = threads
        self._stream_started(ctx.name, bytes(ctx.extradata or b""), stream.time_base or Fraction(1, 90000))
        pacer = _Pacer(cfg.source.realtime and self._kind == SourceKind.FILE)
        self._last_frame = time.monotonic()
        try:
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                if packet.size:  # an empty packet is the end-of-stream flush: decode only
                    self._publish_packet(packet)
                try:
                    frames = packet.decode()
                except (av.error.InvalidDataError, av.error.PermissionError, ValueError) as exc:
                    self._corruption.rejected_packet()
                    log.debug("camera %s: corrupt packet skipped (%s)", cfg.key, type(exc).__name__)
                    continue
                for frame in frames:
                    pacer.wait(frame.time, stop)
                    # The decoder conceals damage without raising; it flags the frame instead
                    # (decode_error_flags / AV_FRAME_FLAG_CORRUPT). The demuxer flags lost data.
                    self._on_frame(frame, corrupt=frame.is_corrupt or packet.is_corrupt)
                if time.monotonic() - self._last_frame > cfg.source.stall_timeout:
                    raise IngestError(ErrorKind.STALLED, cfg.url,
                                      f"packets but no decodable frame for {cfg.source.stall_timeout:g} s")
        except (IngestError, AlreadyRunning):
            raise
        except Exception as exc:
            err = classify(exc, cfg.url)
            silent = time.monotonic() - self._last_frame
            if err.kind == ErrorKind.TIMEOUT and self._frame_count:
                err = IngestError(ErrorKind.STALLED, cfg.url, f"no data for {cfg.source.stall_timeout:g} s")
            elif err.kind == ErrorKind.OTHER and getattr(exc, "errno", None) == errno.EIO and (
                cfg.url.lower().startswith(("rtsps:", "https:"))
            ):
                # Over TLS FFmpeg reports a read timeout and a vanished server alike as EIO
                limit = 0.9 * min(cfg.source.open_timeout, cfg.source.stall_timeout)
                if self._frame_count and silent >= limit:
                    err = IngestError(ErrorKind.STALLED, cfg.url, f"no data for {silent:.1f} s (TLS)")
                else:
                    err = IngestError(ErrorKind.ENDED, cfg.url, "the TLS connection was lost")
            raise err from None
        raise IngestError(ErrorKind.ENDED, cfg.url, "the source closed the stream")

    def _synthetic_session(self, stop: threading.Event) -> None:
        src = SyntheticSource(self.config.url)
        self._stream_started(src.codec_name, src.extradata, src.time_base)
        self._last_frame = time.monotonic()
        for packets, frame in src.run(stop):
            for packet in packets:
                self._publish_packet(packet)
            self._on_frame(frame, corrupt=False)

    # ---- publishing ---------------------------------------------------------
    def _stream_started(self, codec: str, extradata: bytes, time_base: Fraction) -> None:
        self._codec = codec
        self._time_base = float(time_base)
        self._stream = (codec, extradata[:4096], (time_base.numerator, time_base.denominator))
        if self._packets is not None:
            self._packets.set_stream(*self._stream)

    def _publish_packet(self, packet: av.Packet[Any]) -> None:
        fields: dict[str, Any] = {
            "pts": packet.pts, "dts": packet.dts, "duration": int(packet.duration or 0),
            "key": packet.is_keyframe, "corrupt": packet.is_corrupt, "discontinuity": self._discontinuity,
        }
        self._packet_count += 1
        if self._probe is not None:
            t = packet.dts if packet.dts is not None else packet.pts
            self._probe.add(packet.size, t * self._time_base if t is not None else None, time.monotonic())
        if self._packets is None:  # the stream's rate is being measured: held until the ring exists
            self._backlog.append((bytes(packet), fields, time.time_ns()))
            if self._probe is not None and self._probe.done:
                self._flush_backlog()
            return
        if self._probe is not None and self._probe.done:
            self._remeasured(self._probe)
        self._publish(memoryview(packet), fields, None)

    def _remeasured(self, probe: RateProbe) -> None:
        """A window of the stream measured since the ring exists: grow the ring if the stream needs more."""
        assert self._packets is not None
        need = ring_capacity(probe.bytes_per_s(), self.config.packet_capacity,
                             self.config.packet_seconds or 0.0, probe.largest)
        if need > GROW_FACTOR * self._packets.capacity:
            self._grow_to = max(self._grow_to, need)
            self._grow_rate = probe.bytes_per_s()
        self._probe = RateProbe(probe_s=REMEASURE_S, wall_s=2 * REMEASURE_S)

    def _publish(self, data: bytes | memoryview, fields: dict[str, Any], capture_ns: int | None) -> None:
        assert self._packets is not None
        if self._grow_to > self._packets.capacity and fields["key"]:
            # a faster stream than measured: a bigger ring, from a keyframe (readers re-subscribe there)
            self._create_packet_ring(self._grow_to, self._grow_rate)
        if len(data) > self._packets.max_packet and self._packets.capacity < self.config.packet_capacity:
            self._create_packet_ring(min(self.config.packet_capacity, 8 * len(data)))  # a rare huge keyframe
        self._packets.publish(data, capture_ns=capture_ns, **fields)

    def _flush_backlog(self) -> None:
        """Create the packet ring sized from the measured rate, and publish the packets held meanwhile."""
        if self._packets is not None or self._probe is None or not self._backlog:
            return
        probe = self._probe
        self._create_packet_ring(ring_capacity(probe.bytes_per_s(), self.config.packet_capacity,
                                               self.config.packet_seconds or 0.0, probe.largest),
                                 probe.bytes_per_s())
        self._probe = RateProbe(probe_s=REMEASURE_S, wall_s=2 * REMEASURE_S)  # the stream may get faster
        backlog, self._backlog = self._backlog, []
        for data, fields, capture_ns in backlog:
            self._publish(data, fields, capture_ns)

    def _create_packet_ring(self, capacity: int, rate: float | None = None) -> None:
        """(Re-)create the packet ring with ``capacity`` bytes (readers of an old one re-subscribe).

        ``rate``: the stream's measured bytes per second it was sized for (logged).
        """
        old = self._packets
        if old is not None:
            old.close()
        if self._stream is not None:  # described at creation: a reader may open the ring at once
            codec, extradata, time_base = self._stream
            self._packets = PacketPublisher(self.config.key, codec, extradata=extradata, time_base=time_base,
                                            capacity=capacity)
        else:
            self._packets = PacketPublisher(self.config.key, "", capacity=capacity)
        log.info("camera %s: packet ring of %.1f MiB%s", self.config.key, capacity / 2**20,
                 f" ({rate * 8 / 1000:.0f} kbit/s measured)" if rate else "")

    def _on_frame(self, frame: av.VideoFrame, *, corrupt: bool) -> None:
        now = time.monotonic()
        self._last_frame = now
        self._decoded_count += 1
        if corrupt:
            self._corruption.corrupt_frame()
        if now - self._degraded_checked >= 1.0:
            self._degraded_checked = now
            self._log_degraded()
        if self._tracker.state != IngestState.STREAMING:
            self._backoff.reset()
            self._enter(IngestState.STREAMING)
        if not self._size_gate.accept((frame.width, frame.height), key=frame.key_frame, now=now):
            # Pictures of a size the stream has not kept through a keyframe are
            # most likely a damaged parameter set: dropping them keeps every
            # subscriber on the ring instead of re-creating it twice.
            self._corruption.corrupt_frame()
            return
        t = frame.time if frame.time is not None else now
        if not self._limiter.keep(t):
            return
        fmt = self.config.output.ring_format(frame.width, frame.height)
        self._ensure_frame_ring(fmt, frame)
        assert self._frames is not None
        slot = self._frames.begin()
        try:
            self._converter.write(frame, fmt, slot)
        except BaseException:
            self._frames.commit(pts=frame.pts or 0, flags=FrameFlags.CORRUPT)
            raise
        flags = FrameFlags.NONE
        if frame.key_frame:
            flags |= FrameFlags.KEY
        if corrupt:
            flags |= FrameFlags.CORRUPT
        if self._discontinuity:
            flags |= FrameFlags.DISCONTINUITY
            self._discontinuity = False
        self._frames.commit(pts=frame.pts or 0, capture_ns=time.time_ns(), flags=flags)
        self._frame_count += 1
        if self._fps_t:
            dt = now - self._fps_t
            if dt > 0:
                self._fps = 1 / dt if not self._fps else 0.9 * self._fps + 0.1 / dt
        self._fps_t = now

    def _log_degraded(self) -> None:
        """Log when the stream becomes, or stops being, degraded by damaged frames."""
        reason = self._corruption.degraded()
        if (reason is None) == (self._degraded is None):
            return
        self._degraded = reason
        if reason is not None:
            log.warning("camera %s: %s (threshold %g); frames are published flagged corrupt",
                        self.config.key, reason, self.config.source.corrupt_degraded_per_min)
        else:
            log.info("camera %s: stream no longer corrupt", self.config.key)

    def _ensure_frame_ring(self, fmt: FrameFormat, frame: av.VideoFrame) -> None:
        if self._frames is not None and self._frames.format == fmt:
            return
        if self._frames is not None:
            old = self._frames.format.describe()
            log.info("camera %s: resolution changed %s -> %dx%d; re-creating the frame ring",
                     self.config.key, old, frame.width, frame.height)
            self._frames.close(format_changed=True)
            self._frames = None
        self._size = (frame.width, frame.height)
        self._frames = FramePublisher(self.config.key, fmt, slots=self.config.ring_slots)


class _Pacer:
    """Holds frames of a file back to their own rate (``realtime`` files)."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._origin: tuple[float, float] | None = None

    def wait(self, t: float | None, stop: threading.Event) -> None:
        if not self._enabled or t is None:
            return
        now = time.monotonic()
        if self._origin is None or t < self._origin[1]:
            self._origin = (now, t)
            return
        due = self._origin[0] + (t - self._origin[1])
        if due > now:
            stop.wait(due - now)

