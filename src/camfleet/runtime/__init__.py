"""runtime: the node's supervisor — a reconciler of camera processes, health, healing, metrics."""

from .control import CameraStatus, NodeControl, NodeStatus, ProcessStatus, ReloadResult
from .default import default_config
from .node import Node, NodeAlreadyRunning

__all__ = ["CameraStatus", "Node", "NodeAlreadyRunning", "NodeControl", "NodeStatus", "ProcessStatus",
           "ReloadResult", "default_config"]
