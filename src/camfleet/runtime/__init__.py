"""runtime: the node's supervisor (first slice): processes per camera, shared detectors."""

from .default import default_config
from .node import Node

__all__ = ["Node", "default_config"]
