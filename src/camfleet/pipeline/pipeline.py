"""A camera's pipeline: its elements in order, fed frame by frame."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from camfleet.framebus import Frame

from .context import FrameContext
from .element import Element, PipelineEnv
from .registry import build_config, element_class

log = logging.getLogger("camfleet.pipeline")

ElementSpec = tuple[str, dict[str, Any] | None]


class Pipeline:
    """Named, ordered elements built from a list of (name, params).

    For example     ``[("motion", {...}), ("detect", {...}), ("track", {})]``.

    Unknown elements and invalid element settings fail at build time, with the
    element's position and name in the message.
    """

    def __init__(self, specs: Sequence[ElementSpec], env: PipelineEnv) -> None:
        self.env = env
        self.elements: list[Element[Any]] = []
        for i, (name, params) in enumerate(specs):
            cls = element_class(name)
            try:
                config = build_config(cls, params)
            except Exception as exc:
                raise ValueError(f"pipeline element {i} ({name!r}) of camera {env.camera!r}: {exc}") from exc
            self.elements.append(cls(config, env))
        self.process_ms = 0.0

    def start(self) -> None:
        """Start every element."""
        for element in self.elements:
            element.start()

    def stop(self) -> None:
        """Stop every element (errors are logged, not raised)."""
        for element in reversed(self.elements):
            try:
                element.stop()
            except Exception:
                log.exception("camera %s: element %s failed to stop", self.env.camera, element.name)

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

    def process(self, ctx: FrameContext) -> FrameContext:
        """Run every element on ``ctx`` in order; returns it."""
        t0 = time.perf_counter()
        off = self.env.off
        for element in self.elements:
            if element.name not in off:  # switched off by the camera (e.g. MQTT detect OFF)
                element.process(ctx)
            element.beat()
        self.process_ms = (time.perf_counter() - t0) * 1000
        return ctx

    def process_frame(self, frame: Frame) -> FrameContext:
        """Run the pipeline on a leased ring frame (the caller releases it afterwards)."""
        fmt = frame.format
        ctx = FrameContext(
            camera=self.env.camera, seq=frame.seq, pts=frame.pts, capture_ns=frame.capture_ns,
            width=fmt.width, height=fmt.height, pixel_format=fmt.pixel_format, image=frame.array,
        )
        return self.process(ctx)
