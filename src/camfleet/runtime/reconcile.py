"""What must change when the configuration changes: a plan per camera (pure logic).

Each camera process depends on part of the configuration, its kind's
signature (:meth:`camfleet.runtime.kinds.CameraKind.signature`). Comparing
those parts between the running and the new configuration says, per camera,
which processes to start, stop, restart, or update in place: for the kinds
that take updates (the pipeline), changed zones, masks or element
parameters alone are applied to the running process without a restart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from camfleet.config import Config

from .kinds import CameraKind, camera_kinds, settings_of


def live_settings(config: Config, camera: str) -> object:
    """What a running process can take without a restart.

    Element parameters, zones, masks, and the camera's switches of its detect, motion and
    snapshot elements (``detect.enabled``, ``motion``, ``snapshots``).
    """
    cam = config.camera(camera)
    elements = [settings_of(e) for e in config.pipeline_of(camera)]
    switches = (cam.detect.enabled, settings_of(cam.motion), settings_of(cam.snapshots))
    return (elements, settings_of(cam.zones), settings_of(cam.masks), switches)


@dataclass
class CameraPlan:
    """The changes to one camera's processes; ``update``: send the new settings to those that take updates."""

    start: list[CameraKind] = field(default_factory=list)
    stop: list[CameraKind] = field(default_factory=list)
    restart: list[CameraKind] = field(default_factory=list)
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
    for section in ("storage", "api", "data_dir", "webhooks", "mqtt"):
        if settings_of(getattr(old, section)) != settings_of(getattr(new, section)):
            result.needs_node_restart.append(section)
    for name in sorted(set(old.cameras) | set(new.cameras)):
        was = camera_kinds(old, name) if name in old.cameras else []
        now = camera_kinds(new, name) if name in new.cameras else []
        p = CameraPlan()
        p.start = [k for k in now if k not in was]
        p.stop = [k for k in was if k not in now]
        for kind in (k for k in now if k in was):
            if kind.signature(old, name) != kind.signature(new, name):
                p.restart.append(kind)
        if any(k.takes_updates and k in was and k not in p.restart for k in now):
            p.update = live_settings(old, name) != live_settings(new, name)
        if name not in old.cameras:
            result.added.append(name)
        elif name not in new.cameras:
            result.removed.append(name)
        if not p.empty:
            result.cameras[name] = p
    return result
