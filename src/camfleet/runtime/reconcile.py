"""What must change when the configuration changes: a plan per camera (pure logic).

Each camera process depends on part of the configuration. Comparing those
parts between the running and the new configuration says, per camera,
which processes to start, stop, restart, or update in place:

* ingest: the detect source and the frames it produces;
* pipeline: the element list, the detect size, the detectors it talks to;
  changed zones, masks or element parameters alone are applied to the
  running pipeline without a restart;
* recorder: the record source and the segment length (retention settings
  are read by the node, not the recorder).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from camfleet.config import Config

KINDS = ("ingest", "pipeline", "recorder")


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def process_kinds(config: Config, camera: str) -> list[str]:
    """The processes ``camera`` runs under ``config`` (none when disabled)."""
    cam = config.camera(camera)
    if not cam.enabled:
        return []
    kinds = ["ingest", "pipeline"]
    if cam.record.enabled:
        kinds.append("recorder")
    return kinds


def signature(config: Config, camera: str, kind: str) -> Any:
    """The part of ``config`` that ``camera``'s ``kind`` process is started with."""
    cam = config.camera(camera)
    if kind == "ingest":
        return (_dump(cam.detect_source), _dump(cam.detect))
    if kind == "pipeline":
        names = [e.name for e in config.pipeline_of(camera)]
        used = sorted(
            (str(e.params.get("detector", "cpu")), str(e.params.get("model", "")))
            for e in config.pipeline_of(camera) if e.name == "detect"
        )
        detectors = {d: (_dump(config.detectors.get(d)), _dump(config.models.get(m))) for d, m in used}
        return (names, _dump(cam.detect), used, detectors)
    if kind == "recorder":
        src = cam.source("record") or cam.detect_source
        return (_dump(src), cam.record.enabled, cam.record.segment_seconds)
    raise ValueError(f"unknown process kind {kind!r}")


def live_settings(config: Config, camera: str) -> Any:
    """What a running pipeline can take without a restart: element parameters, zones, masks."""
    cam = config.camera(camera)
    return ([_dump(e) for e in config.pipeline_of(camera)], _dump(cam.zones), _dump(cam.masks))


@dataclass
class CameraPlan:
    """The changes to one camera's processes."""

    start: list[str] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    update: bool = False

    @property
    def empty(self) -> bool:
        """True when nothing changes for this camera."""
        return not (self.start or self.stop or self.restart or self.update)


@dataclass
class Plan:
    """Per camera changes, plus the cameras added and removed as a whole."""

    cameras: dict[str, CameraPlan] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    needs_node_restart: list[str] = field(default_factory=list)


def plan(old: Config, new: Config) -> Plan:
    """The least set of process changes that makes a node running ``old`` run ``new``."""
    result = Plan()
    for section in ("storage", "api", "data_dir"):
        if _dump(getattr(old, section)) != _dump(getattr(new, section)):
            result.needs_node_restart.append(section)
    for name in sorted(set(old.cameras) | set(new.cameras)):
        was = process_kinds(old, name) if name in old.cameras else []
        now = process_kinds(new, name) if name in new.cameras else []
        p = CameraPlan()
        p.start = [k for k in now if k not in was]
        p.stop = [k for k in was if k not in now]
        for kind in (k for k in now if k in was):
            if signature(old, name, kind) != signature(new, name, kind):
                p.restart.append(kind)
        if "pipeline" in now and "pipeline" in was and "pipeline" not in p.restart:
            p.update = live_settings(old, name) != live_settings(new, name)
        if name not in old.cameras:
            result.added.append(name)
        elif name not in new.cameras:
            result.removed.append(name)
        if not p.empty:
            result.cameras[name] = p
    return result
