"""The recorder of one camera: its packet ring → MP4 segments, remuxed, never decoded.

:class:`Recorder` subscribes to the camera's packet ring (key = camera name),
waits for it to appear, and re-subscribes when the publisher restarts. Each
segment starts at a keyframe and ends at the first keyframe at or after
``segment_seconds``; it is written as ``.part``, fsynced and renamed, and only
then announced to the ``sink`` as one :class:`~camfleet.vocabulary.SegmentMessage`
(the recorder never writes the database itself). A gap -- publisher gone,
discontinuity flag, timestamp jump, stream time drifting from the wall clock,
a stream format change, no packets for ``max_gap`` seconds -- closes the open
segment cleanly; the next one begins at the next keyframe. On stop the open
segment is finished. Leftover ``.part`` files of a killed recorder are
recovered at start (:mod:`camfleet.recording.recover`). A failed write or
finish (EIO, ENOSPC) never deletes what was written: the ``.part`` is kept
and finalised after the next segment that finishes (the disk works again),
or at the next start.

A codec that cannot go into MP4 as is (MJPEG, MPEG-4 part 2, raw video) is
recorded from the camera's decoded frames instead, encoded to H.264
(:mod:`camfleet.recording.transcode`), as ``record.transcode`` allows;
:attr:`Recorder.problem` says why a camera cannot be recorded.

Recording modes are not the recorder's business: it records continuously and
:mod:`camfleet.recording.retention` keeps what each mode asks for.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from camfleet import framebus
from camfleet.framebus import Packet, PacketFlags, PacketSubscriber
from camfleet.vocabulary import OutboxMessage, SegmentMessage, SegmentRecord

from .bitstream import BitstreamError, StreamInfo, stream_info
from .paths import check_camera, relpath, segment_relpath
from .recover import Outcome, recover_part, recover_parts
from .segment import SegmentInfo, SegmentWriter
from .timeline import Timeline
from .transcode import FrameRingTranscoder, can_remux

if TYPE_CHECKING:
    from camfleet.config import Config, RecordSettings

log = logging.getLogger("camfleet.recording")

_POLL = 0.25  # seconds a blocked read waits before looking at the stop event


class Sink(Protocol):
    """Where segment messages go: the node's outbox or anything with ``put``.

    ``put`` returns once the message is safe there (the outbox: on disk).
    """

    def put(self, item: OutboxMessage) -> None:
        """Deliver one message."""


@dataclass
class RecorderStats:
    """Counters of a recorder: segments written, gaps seen, packets written/dropped, errors."""

    segments: int = 0
    gaps: int = 0
    packets: int = 0
    dropped: int = 0
    errors: int = 0
    subscriptions: int = 0


def segment_message(camera: str, recordings_dir: Path, info: SegmentInfo) -> SegmentMessage:
    """The segment message for ``info`` (path relative to ``recordings_dir``; times epoch s)."""
    return SegmentMessage(SegmentRecord(
        camera=camera, path=relpath(recordings_dir, info.path), start=info.start, end=info.end,
        size=info.size, frames=info.frames, keyframes=info.keyframes,
    ))


class Recorder:
    """Records one camera's packet ring into segments under ``recordings_dir/<camera>``.

    ``settings.segment_seconds`` is the target segment length (seconds);
    ``sink.put`` receives one message per finished segment. ``max_gap`` is
    the longest silence, timestamp step or clock drift (seconds) that still
    counts as one continuous stream. ``on_segment`` is called after each
    message (for tests and metrics); ``heartbeat`` at least every 0.25 s
    while the loop runs (for the supervisor's liveness check). ``fps`` is the
    camera's frame ring rate (``detect.fps``), used when frames are encoded.
    """

    def __init__(
        self,
        camera: str,
        settings: RecordSettings,
        recordings_dir: Path,
        sink: Sink | None,
        *,
        max_gap: float = 2.5,
        connect_timeout: float = 1.0,
        on_segment: Callable[[SegmentInfo], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
        fps: float = 10.0,
    ) -> None:
        self.camera = check_camera(camera)
        self.settings = settings
        self.recordings_dir = Path(recordings_dir)
        self.sink = sink
        self.max_gap = max_gap
        self.connect_timeout = connect_timeout
        self.on_segment = on_segment
        self._heartbeat = heartbeat or (lambda: None)
        self.stats = RecorderStats()
        self._writer: SegmentWriter | None = None
        self._timeline: Timeline | None = None
        self._info: StreamInfo | None = None
        self._format: tuple[str, bytes, tuple[int, int]] | None = None
        self._in_discontinuity = False
        self._silent_since = time.monotonic()
        self._unrecordable: str | None = None  # why the packet ring's stream cannot be recorded
        self._transcoder: FrameRingTranscoder | None = None
        self._fps = fps
        self._leftovers: list[Path] = []  # .part files of failed segments, to finalise later
        if settings.transcode == "always":
            self._start_transcoding("record.transcode is always", fps)

    @property
    def problem(self) -> str | None:
        """Why this camera is not being recorded (its supervisor reports it degraded), or None."""
        if self._transcoder is not None:
            return self._transcoder.error
        return self._unrecordable

    @property
    def transcoding(self) -> bool:
        """Whether segments are encoded from the frame ring rather than remuxed from the packet ring."""
        return self._transcoder is not None

    def _start_transcoding(self, why: str, fps: float) -> None:
        log.info("recorder %s: encoding the decoded frames to H.264 (%s)", self.camera, why)
        self._unrecordable = None
        # the frame ring may run at a few frames per second: its frame interval is no gap
        self.max_gap = max(self.max_gap, 3.0 / fps)
        beat, timeout = self._heartbeat, self.connect_timeout
        self._transcoder = FrameRingTranscoder(self.camera, self.on_packet, fps=fps, heartbeat=beat,
                                               connect_timeout=timeout)

    # ---- lifecycle ----------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Record until ``stop`` is set; the open segment is finished before returning."""
        self.recover()
        try:
            while not stop.is_set():
                self._heartbeat()
                if self._transcoder is not None:
                    self._transcoder.run(stop)
                    self._close("stopped" if stop.is_set() else "frame ring gone")
                    continue
                try:
                    sub = framebus.subscribe_packets(
                        self.camera, name=f"recorder-{self.camera}", connect_timeout=self.connect_timeout
                    )
                except (framebus.NotFound, framebus.PublisherGone, framebus.SegmentError):
                    continue  # not published (yet): connect_timeout bounded the wait
                except framebus.DuplicateSubscriber:
                    stop.wait(_POLL)  # a killed predecessor's entry is reclaimed within a second
                    continue
                self.stats.subscriptions += 1
                with sub:
                    self._consume(sub, stop)
                self._close("stopped" if stop.is_set() else "publisher gone")
        finally:
            self._close("stopped")
            self.retry_leftovers()

    def recover(self) -> None:
        """Recover this camera's leftover ``.part`` files (:func:`recover_parts`); announce the finalised."""
        report = recover_parts(self.recordings_dir / self.camera,
                               skip={self._writer.part} if self._writer is not None else ())
        self._leftovers = list(report.kept)
        for info in report.finalised:
            self._announce(info)

    def retry_leftovers(self) -> None:
        """Try again to finalise the ``.part`` files of failed segments; announce those finalised."""
        pending, self._leftovers = self._leftovers, []
        for part in pending:
            outcome, result = recover_part(part, self.recordings_dir)
            if outcome is Outcome.KEPT:
                self._leftovers.append(part)
            elif outcome is Outcome.FINALISED:
                assert isinstance(result, SegmentInfo)
                self._announce(result)

    @property
    def leftovers(self) -> list[Path]:
        """The ``.part`` files of failed segments still waiting to be finalised."""
        return list(self._leftovers)

    # ---- reading ------------------------------------------------------------
    def _consume(self, sub: PacketSubscriber, stop: threading.Event) -> None:
        self._silent_since = time.monotonic()
        while not stop.is_set():
            self._heartbeat()
            try:
                packet = sub.next(timeout=_POLL)
            except framebus.FrameTimeout:
                if self._writer is not None and time.monotonic() - self._silent_since > self.max_gap:
                    self._gap(f"no packet for {self.max_gap:g} s")
                continue
            except framebus.PublisherGone:
                return
            self._silent_since = time.monotonic()
            # the stream description is read at keyframes only: that is where it may change
            fmt = (sub.codec, sub.extradata, sub.time_base) if packet.is_key else None
            if fmt is not None and not can_remux(fmt[0]) and self._not_remuxable(fmt[0]):
                return  # from now on the frames are recorded: leave the packet ring
            self.on_packet(packet, fmt)

    def _not_remuxable(self, codec: str) -> bool:
        """A stream of ``codec`` cannot go into MP4: switch to encoding frames (True) or say why not."""
        if self.settings.transcode == "never":
            why = f"codec {codec} cannot be remuxed into MP4 and record.transcode is never"
            if self._unrecordable != why:
                log.error("recorder %s: cannot record: %s", self.camera, why)
                self.stats.errors += 1
            self._unrecordable = why
            return False  # on_packet drops its packets (no stream description)
        self._close("stream format changed")
        self._start_transcoding(f"codec {codec} cannot be remuxed into MP4", self._fps)
        return True

    def on_packet(self, packet: Packet, fmt: tuple[str, bytes, tuple[int, int]] | None) -> None:
        """Handle one packet; ``fmt`` is the ring's (codec, extradata, time_base), given at keyframes."""
        flagged = bool(packet.flags & PacketFlags.DISCONTINUITY)
        if flagged and not self._in_discontinuity:
            self._gap(f"discontinuity ({packet.lost} packets lost)" if packet.lost else "discontinuity")
        self._in_discontinuity = flagged
        if fmt is not None and fmt != self._format:
            if self._format is not None:
                self._gap("stream format changed")
            if not self._set_format(*fmt, packet):
                return
        tl = self._timeline
        if tl is None or self._info is None:
            self.stats.dropped += 1
            return
        ts = Timeline.ts(packet)
        if ts is None:
            ts = round(packet.capture_ns / 1e9 / tl.time_base)
        if tl.anchored:
            reason = tl.is_gap(packet, ts)
            if reason is not None:
                self._gap(reason)
        if self._writer is None:
            if not packet.is_key:
                self.stats.dropped += 1
                return
            if not tl.anchored:
                tl.anchor(packet, ts)
            self._open(ts)
        elif packet.is_key and float((ts - self._writer.origin + tl.frame_step // 2) * tl.time_base) >= (
            self.settings.segment_seconds  # half a frame of slack: timestamps jitter by a few ms
        ):
            self._finish(tl.wall(ts))
            if abs(tl.drift(packet, ts)) > self.max_gap / 2:
                tl.anchor(packet, ts)  # slow clock drift: re-anchor at a cut, never mid-segment
            self._open(ts)
        self._write(packet, ts)

    def _set_format(self, codec: str, extradata: bytes, time_base: tuple[int, int], key: Packet) -> bool:
        try:
            self._info = stream_info(codec, extradata, key.data)
        except BitstreamError as exc:
            self._unrecordable = self._unrecordable or f"cannot record this stream: {exc}"  # keep the first
            if self._format != (codec, extradata, time_base):
                log.error("recorder %s: cannot record this stream: %s", self.camera, exc)
            self._format = (codec, extradata, time_base)
            self._info = None
            self._timeline = None
            self.stats.errors += 1
            return False
        self._format = (codec, extradata, time_base)
        self._unrecordable = None
        self._timeline = Timeline(Fraction(*time_base), self.max_gap)
        log.info("recorder %s: recording %s %dx%d", self.camera, codec, self._info.width, self._info.height)
        return True

    # ---- segments -----------------------------------------------------------
    def _open(self, ts: int) -> None:
        assert self._timeline is not None and self._info is not None
        start = self._timeline.wall(ts)
        path = self.recordings_dir / segment_relpath(self.camera, start)
        try:
            self._writer = SegmentWriter(path, self._info, self._timeline.time_base, start, ts)
        except Exception as exc:
            log.error("recorder %s: cannot open segment %s: %s", self.camera, path, exc)
            self.stats.errors += 1
            self._writer = None

    def _write(self, packet: Packet, ts: int) -> None:
        tl = self._timeline
        assert tl is not None
        if self._writer is None:
            self.stats.dropped += 1
            return
        pts = packet.pts if packet.pts is not None else ts
        try:
            self._writer.write(packet.data, pts, ts, packet.duration, packet.is_key)
        except Exception as exc:
            log.error("recorder %s: write failed; the segment ends here, what it holds is kept: %s",
                      self.camera, exc)
            self.stats.errors += 1
            self._abandon(self._writer)
            self._writer = None
            tl.reset()
            return
        tl.advance(packet, ts)
        self.stats.packets += 1

    def _finish(self, end: float) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if writer.frames == 0:
            writer.abort()
            return
        try:
            info = writer.finish(end)
        except Exception as exc:
            log.error("recorder %s: cannot finish segment %s; kept for a later try: %s",
                      self.camera, writer.path, exc)
            self.stats.errors += 1
            self._abandon(writer)
            return
        self._announce(info)
        if self._leftovers:  # a segment was written: the disk works again
            self.retry_leftovers()

    def _abandon(self, writer: SegmentWriter) -> None:
        part = writer.abandon()
        if part is not None:
            self._leftovers.append(part)

    def _announce(self, info: SegmentInfo) -> None:
        if self.sink is not None:
            self.sink.put(segment_message(self.camera, self.recordings_dir, info))
        self.stats.segments += 1
        if self.on_segment is not None:
            self.on_segment(info)

    def finish_segment(self, reason: str = "stopped") -> None:
        """Finish the open segment now, as on stop (after the last packet written)."""
        self._close(reason)

    def _close(self, reason: str) -> None:
        """End the open segment after the last packet written (not at a keyframe)."""
        tl = self._timeline
        if self._writer is not None and tl is not None and tl.last_ts is not None:
            log.info("recorder %s: closing segment (%s)", self.camera, reason)
            self._finish(tl.wall(tl.last_ts + tl.frame_step))
        if tl is not None:
            tl.reset()

    def _gap(self, reason: str) -> None:
        self.stats.gaps += 1
        log.info("recorder %s: gap in the stream: %s", self.camera, reason)
        self._close(reason)


def recorder_main(config: Config, camera: str, sink: Sink) -> None:
    """A recorder process: ``camera``'s packet ring into segments until SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = config.camera(camera).record
    Recorder(camera, settings, config.recordings_path, sink).run(stop)
