"""The element model: a small base class every pipeline step derives from.

An element has a typed config (a pydantic model, unknown keys rejected), a
``start`` / ``process`` / ``stop`` life cycle, and a heartbeat: the time its
last ``process`` finished, which the runtime watches.

Writing your own element::

    from pydantic import BaseModel
    from camfleet.pipeline import Element, ElementConfig, FrameContext

    class CountPeopleConfig(ElementConfig):
        alert_at: int = 3                       # people in the frame

    class CountPeople(Element[CountPeopleConfig]):
        name = "count_people"
        config_type = CountPeopleConfig

        def process(self, ctx: FrameContext) -> None:
            people = [t for t in ctx.tracks if t.label == "person"]
            if len(people) >= self.config.alert_at:
                ctx.events.append({"type": "crowd", "count": len(people)})

Register it in your package's ``pyproject.toml``::

    [project.entry-points."camfleet.elements"]
    count_people = "mypackage.elements:CountPeople"

and use it in a pipeline as ``- count_people: {alert_at: 5}``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .context import FrameContext


class ElementConfig(BaseModel):
    """Base of element configs: strict about unknown keys."""

    model_config = ConfigDict(extra="forbid")


LIVE_TRACK_BOXES = "track.live_boxes"
"""``env.services`` key the track element fills after each frame: the last box of every live
track, in pixels (what detect's ``refresh_s`` looks at again in the next frame)."""

EMPTY_MOTION_BOXES = "detect.empty_motion"
"""``env.services`` key the detect element fills after each answer: the motion boxes (pixels) of
that frame the detector looked at and found nothing in. The motion element learns what is still
in them as background (a ghost of an object that left, not an object)."""


@dataclass
class PipelineEnv:
    """What elements may use besides the frame: the camera, its zones, where to write.

    ``zones`` and ``masks`` use normalised 0..1 coordinates; ``data_dir`` is
    where snapshots and the like go; ``services`` holds shared objects (e.g. a
    detector client) keyed by name; ``off`` names the elements the camera has switched
    off (``detect``, ``motion``, ``snapshot``): the pipeline passes over them.
    """

    camera: str
    data_dir: Path
    zones: dict[str, dict[str, Any]] = field(default_factory=dict)
    masks: list[list[tuple[float, float]]] = field(default_factory=list)
    services: dict[str, Any] = field(default_factory=dict)
    off: frozenset[str] = frozenset()


C = TypeVar("C", bound=ElementConfig)


class Element(ABC, Generic[C]):
    """One named step of a pipeline. Subclasses set ``name`` and ``config_type``."""

    name: ClassVar[str]
    config_type: ClassVar[type[ElementConfig]]
    splits: ClassVar[bool] = False
    """True for an element that waits on another process (``detect``): the pipeline calls
    :meth:`submit` and, later, :meth:`collect` instead of :meth:`process`, and may begin the next
    frame in between (see :class:`~camfleet.pipeline.window.FrameWindow`)."""

    def __init__(self, config: C, env: PipelineEnv) -> None:
        self.config = config
        self.env = env
        self.last_beat_ns = 0
        self.frames = 0

    def start(self) -> None:
        """Acquire resources before the first frame (optional)."""

    @abstractmethod
    def process(self, ctx: FrameContext) -> None:
        """Do this element's work on one frame, reading and adding to ``ctx``."""

    def submit(self, ctx: FrameContext) -> None:
        """Start this element's work on ``ctx`` (a splitting element; others do it all here)."""
        self.process(ctx)

    def ready(self, ctx: FrameContext, timeout: float = 0.0) -> bool:
        """Whether :meth:`collect` for ``ctx`` would return without waiting; waits up to ``timeout`` s."""
        return True

    def collect(self, ctx: FrameContext) -> None:
        """Finish the work :meth:`submit` started on ``ctx`` (frames are collected in order)."""

    def drop(self, ctx: FrameContext) -> None:
        """Forget the work started on ``ctx`` (the frame is abandoned)."""

    def stop(self) -> None:
        """Release resources (optional)."""

    def update(self, config: C, env: PipelineEnv) -> None:
        """Take a new config (and zones/masks) without a restart; override to rebuild caches."""
        self.config = config
        self.env = env

    def beat(self) -> None:
        """Record a heartbeat (done by the pipeline after each ``process``)."""
        self.last_beat_ns = time.monotonic_ns()
        self.frames += 1
