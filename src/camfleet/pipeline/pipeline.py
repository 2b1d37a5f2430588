"""A camera's pipeline: its elements in order, fed frame by frame."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from camfleet.framebus import Frame

from .context import FrameContext
from .element import Element, PipelineEnv
from .meta import MetaPublisher
from .paths import ObjectPaths
from .registry import build_config, element_class

log = logging.getLogger("camfleet.pipeline")

ElementSpec = tuple[str, dict[str, Any] | None]


class Pipeline:
    """Named, ordered elements built from a list of (name, params).

    For example     ``[("motion", {...}), ("detect", {...}), ("track", {})]``.

    Unknown elements and invalid element settings fail at build time, with the
    element's position and name in the message.
    """

    def __init__(self, specs: Sequence[ElementSpec], env: PipelineEnv, *, publish_meta: bool = False) -> None:
        self.env = env
        self.publish_meta = publish_meta
        """Publish each analysed frame's objects and motion for the live overlay (:mod:`.meta`)."""
        self.meta: MetaPublisher | None = None
        self.paths = ObjectPaths()
        self.elements: list[Element[Any]] = []
        for i, (name, params) in enumerate(specs):
            cls = element_class(name)
            try:
                config = build_config(cls, params)
            except Exception as exc:
                raise ValueError(f"pipeline element {i} ({name!r}) of camera {env.camera!r}: {exc}") from exc
            self.elements.append(cls(config, env))
        # the first element that waits on another process splits a frame's work in two
        self._split = next((i for i, e in enumerate(self.elements) if e.splits), len(self.elements))
        self._begin_ms: dict[int, float] = {}
        self.process_ms = 0.0

    def start(self) -> None:
        """Start every element."""
        for element in self.elements:
            element.start()
        if self.publish_meta and self.meta is None:
            self.meta = MetaPublisher(self.env.camera)

    def stop(self) -> None:
        """Stop every element (errors are logged, not raised)."""
        for element in reversed(self.elements):
            try:
                element.stop()
            except Exception:
                log.exception("camera %s: element %s failed to stop", self.env.camera, element.name)
        if self.meta is not None:
            self.meta.close()
            self.meta = None

    def update(self, specs: Sequence[ElementSpec], env: PipelineEnv) -> bool:
        """Apply new settings in place when the element list is unchanged.

        Returns False (nothing changed) when elements were added, removed or
        reordered: then the pipeline has to be rebuilt.
        """
        if [n for n, _ in specs] != [e.name for e in self.elements]:
            return False
        configs = [build_config(type(e), p) for e, (_, p) in zip(self.elements, specs, strict=True)]
        self.env = env
        for element, config in zip(self.elements, configs, strict=True):
            element.update(config, env)
        return True

    @property
    def inflight(self) -> int:
        """Frames that may wait on the splitting element at once (its ``inflight`` setting; 1 without one)."""
        if self._split >= len(self.elements):
            return 1
        return max(1, int(getattr(self.elements[self._split].config, "inflight", 1)))

    def process(self, ctx: FrameContext) -> FrameContext:
        """Run every element on ``ctx`` in order; returns it."""
        self.begin(ctx)
        return self.finish(ctx)

    def begin(self, ctx: FrameContext) -> FrameContext:
        """Run the elements up to the first splitting one (``detect``), which only submits its work.

        :meth:`finish` completes the frame; frames must be finished in the order they were begun.
        """
        t0 = time.perf_counter()
        off = self.env.off
        for element in self.elements[: self._split]:
            if element.name not in off:  # switched off by the camera (e.g. MQTT detect OFF)
                element.process(ctx)
            element.beat()
        if self._split < len(self.elements) and self.elements[self._split].name not in off:
            self.elements[self._split].submit(ctx)
        self._begin_ms[id(ctx)] = (time.perf_counter() - t0) * 1000
        return ctx

    def ready(self, ctx: FrameContext, timeout: float = 0.0) -> bool:
        """Whether :meth:`finish` for a begun ``ctx`` would not wait on another process.

        Waits up to ``timeout`` s for that.
        """
        return self._split >= len(self.elements) or self.elements[self._split].ready(ctx, timeout)

    def finish(self, ctx: FrameContext) -> FrameContext:
        """Complete a frame :meth:`begin` started: collect the split element's work, run the rest."""
        t0 = time.perf_counter()
        begun = self._begin_ms.pop(id(ctx), 0.0)
        if self._split < len(self.elements):
            split = self.elements[self._split]
            split.collect(ctx)  # nothing to collect when it was off at begin()
            split.beat()
            off = self.env.off
            for element in self.elements[self._split + 1 :]:
                if element.name not in off:
                    element.process(ctx)
                element.beat()
        self.process_ms = begun + (time.perf_counter() - t0) * 1000
        return ctx

    def abandon(self, ctx: FrameContext) -> None:
        """Forget a begun frame that will not be finished (its detector request failed, the ring went)."""
        self._begin_ms.pop(id(ctx), None)
        if self._split < len(self.elements):
            self.elements[self._split].drop(ctx)

    def context(self, frame: Frame) -> FrameContext:
        """A context for a leased ring frame (valid while the frame is held)."""
        fmt = frame.format
        return FrameContext(
            camera=self.env.camera, seq=frame.seq, pts=frame.pts, capture_ns=frame.capture_ns,
            width=fmt.width, height=fmt.height, pixel_format=fmt.pixel_format, image=frame.array,
        )

    def frame_done(self, ctx: FrameContext) -> None:
        """After a frame is finished: keep each event's object path, publish the live overlay's meta."""
        self.paths.update(ctx)  # each event's object path, for the event review
        if self.meta is not None:
            self.meta.publish(ctx)

    def process_frame(self, frame: Frame) -> FrameContext:
        """Run the pipeline on a leased ring frame (the caller releases it afterwards)."""
        ctx = self.process(self.context(frame))
        self.frame_done(ctx)
        return ctx
