"""Frames on their way through a pipeline whose detector answers later: begun in order, finished in order.

A pipeline that waits for each detector answer before it reads the next
frame can analyse at most one frame per round trip. :class:`FrameWindow`
lets it begin the next frame (motion, crops, the detector request) while up
to ``pipeline.inflight`` frames wait for their answers, and finishes them
(tracking, zones, events) strictly in frame order, so tracks and events are
exactly what frame-by-frame processing gives. Each frame's ring lease is
held until it is finished (elements after ``detect`` may read the image).
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from camfleet.framebus import Frame

from .context import FrameContext
from .pipeline import Pipeline


class FrameWindow:
    """The frames a pipeline has begun and not finished, oldest first.

    Not thread-safe (the pipeline's loop owns it). Every method that finishes
    a frame releases its lease, also when finishing raises (a failed detector
    request: the frame is dropped, and the error propagates).
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._frames: collections.deque[tuple[Frame, FrameContext]] = collections.deque()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def full(self) -> bool:
        """Whether as many frames wait as the pipeline allows: finish one before beginning another."""
        return len(self._frames) >= self.pipeline.inflight

    def begin(self, frame: Frame) -> None:
        """Begin ``frame`` (its lease now belongs to the window); releases it when beginning raises."""
        ctx = self.pipeline.context(frame)
        try:
            self.pipeline.begin(ctx)
        except BaseException:
            self.pipeline.abandon(ctx)
            frame.release()
            raise
        self._frames.append((frame, ctx))

    def finish_oldest(self) -> FrameContext:
        """Finish the oldest frame, waiting for its detector answer if need be."""
        frame, ctx = self._frames.popleft()
        try:
            self.pipeline.finish(ctx)
            self.pipeline.frame_done(ctx)
            return ctx
        except BaseException:
            self.pipeline.abandon(ctx)
            raise
        finally:
            frame.release()

    def wait_oldest(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the oldest answer: whether :meth:`finish_oldest` would not wait."""
        return not self._frames or self.pipeline.ready(self._frames[0][1], timeout)

    def finish_ready(self) -> Iterator[FrameContext]:
        """Finish the frames that need not wait, oldest first; when the window is full, one more.

        Yields each context as it is finished (its answer was in, or the window had no room).
        """
        while self._frames and (self.full or self.pipeline.ready(self._frames[0][1])):
            yield self.finish_oldest()

    def drop(self) -> None:
        """Abandon every frame not finished (the ring went away, the pipeline stops)."""
        while self._frames:
            frame, ctx = self._frames.popleft()
            self.pipeline.abandon(ctx)
            frame.release()
