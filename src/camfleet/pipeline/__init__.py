"""pipeline: named, ordered elements per camera (motion → detect → track → zones → events → snapshot).

Elements are found by name in a registry that other packages extend through
the ``camfleet.elements`` entry-point group; see :mod:`camfleet.pipeline.element`
for writing one.
"""

from .context import Box, Detection, FrameContext, TrackedObject, ZoneChange, ZoneEvent
from .element import Element, ElementConfig, PipelineEnv
from .events import EventType, EventUpdate, ObjectEvent
from .pipeline import Pipeline
from .registry import UnknownElement, available, element_class

__all__ = [
    "Box",
    "Detection",
    "Element",
    "ElementConfig",
    "EventType",
    "EventUpdate",
    "FrameContext",
    "ObjectEvent",
    "Pipeline",
    "PipelineEnv",
    "TrackedObject",
    "UnknownElement",
    "ZoneChange",
    "ZoneEvent",
    "available",
    "element_class",
]
