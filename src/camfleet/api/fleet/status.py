"""The fleet's status in the node's shape: every applied camera with its node's latest report.

:class:`FleetStatusSource` is what :class:`~camfleet.api.status_cache.StatusCache`
reads on a coordinator: a :class:`~camfleet.runtime.control.NodeStatus` whose
cameras are every applied fleet camera, each from the report of the node the
leader assigned it to (a report from another node, e.g. a fenced one still
stopping it, is not shown as the camera's), with one extra field ``node``.
Detectors are keyed ``<node>/<detector>``; ``outbox`` sums the nodes' counters.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from camfleet.fleetstore.store import FleetStore
from camfleet.runtime.control import CameraStatus, NodeStatus, ProcessStatus, ReloadResult

from .link import FleetLink

STALE_S = 5.0
"""A node's report older than this (seconds) no longer counts: its cameras show ``unresponsive``.

Agents report every 2 s (``FleetTiming.status_s``): two missed reports. An agent that silent
has also missed its heartbeats past its fencing lease (TTL - 1 s = 3 s), so its cameras have
stopped; a longer wait would show a dead node's cameras healthy until they moved (TTL + grace).
"""

_D = TypeVar("_D")


def _build(cls: type[_D], raw: dict[str, Any], **fixed: Any) -> _D:
    """``cls`` from the known fields of ``raw`` (an agent's JSON), ``fixed`` overriding."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**({k: v for k, v in raw.items() if k in names} | fixed))


@dataclass
class FleetStatus(NodeStatus):
    """:class:`NodeStatus` of the fleet; ``camera_nodes`` becomes each camera's ``node`` field in JSON."""

    camera_nodes: dict[str, str | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The node's status shape, each camera with its ``node`` (null: not placed)."""
        data = super().to_json()
        nodes = data.pop("camera_nodes", {})
        for name, cam in data["cameras"].items():
            cam["node"] = nodes.get(name)
        return data


def _camera(name: str, node: str | None, report: dict[str, Any] | None, age: float | None) -> CameraStatus:
    if node is None:
        return CameraStatus(name=name, state="stopped", reason="not placed on any node")
    raw = (report or {}).get("cameras", {}).get(name) if report is not None else None
    if not isinstance(raw, dict):
        why = f"placed on {node}; no status from it yet" if report is None else f"placed on {node}; starting"
        return CameraStatus(name=name, state="starting", reason=why)
    processes = {k: _build(ProcessStatus, v, name=str(k)) for k, v in (raw.get("processes") or {}).items()
                 if isinstance(v, dict) and isinstance(v.get("kind"), str)}
    cam = _build(CameraStatus, {k: v for k, v in raw.items() if k != "processes"}, name=name,
                 processes=processes)
    if age is not None and age > STALE_S:
        cam.state, cam.reason = "unresponsive", f"node {node} silent for {age:.0f} s"
    return cam


class FleetStatusSource:
    """Computes :class:`FleetStatus` from the database (cameras, assignments) and the link's reports."""

    def __init__(self, store: FleetStore, link: FleetLink, coordinator_id: str) -> None:
        self.store = store
        self.link = link
        self.coordinator_id = coordinator_id
        self.started_at = time.time()

    def status(self) -> NodeStatus:
        """Every applied camera of the fleet, as its node reports it (blocking: reads the database)."""
        cameras = self.store.cameras()
        assigned = self.store.assignments()
        generation = self.store.counter("generation")
        reports = self.link.statuses()
        now = time.monotonic()
        out = FleetStatus(node=self.coordinator_id, pid=os.getpid(), started_at=self.started_at,
                          at=time.time(), reload=ReloadResult(generation=generation, at=time.time()))
        for name in sorted(cameras):
            node = assigned[name][0] if name in assigned else None
            report, at = reports.get(node or "", (None, None))
            out.cameras[name] = _camera(name, node, report, None if at is None else now - at)
            out.camera_nodes[name] = node
        for node, (report, _at) in sorted(reports.items()):
            for det, raw in (report.get("detectors") or {}).items():
                if isinstance(raw, dict) and isinstance(raw.get("kind"), str):
                    out.detectors[f"{node}/{det}"] = _build(ProcessStatus, raw, name=f"{node}/{det}")
            for key, value in (report.get("outbox") or {}).items():
                if isinstance(value, int) and not isinstance(value, bool):
                    out.outbox[key] = out.outbox.get(key, 0) + value
        return out
