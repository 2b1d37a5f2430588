"""runtime: the node's supervisor — a reconciler of camera processes, health, healing, metrics.

The node's names are imported on first use (PEP 562): a camera process imports
:mod:`camfleet.runtime.children` through this package and needs none of the node's
dependencies (the store, the outbox pump, the API's types).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .control import CameraStatus, NodeControl, NodeStatus, ProcessStatus, ReloadResult
    from .default import default_config
    from .node import Node, NodeAlreadyRunning

_LAZY = {
    "CameraStatus": ".control", "NodeControl": ".control", "NodeStatus": ".control",
    "ProcessStatus": ".control", "ReloadResult": ".control", "default_config": ".default",
    "Node": ".node", "NodeAlreadyRunning": ".node",
}

__all__ = ["CameraStatus", "Node", "NodeAlreadyRunning", "NodeControl", "NodeStatus", "ProcessStatus",
           "ReloadResult", "default_config"]


def __getattr__(name: str) -> Any:
    """The node's names, imported when first asked for."""
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
