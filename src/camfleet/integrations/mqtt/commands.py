"""Frigate's camera commands (``<prefix>/<camera>/<command>/set``) as configuration changes (pure).

:func:`parse_command` reads a topic and payload into a :class:`Command` (or says why not);
:func:`changed_config` builds the configuration that carries it out, from the one in force;
:func:`camera_states` gives the retained ``<camera>/<command>/state`` values of a configuration.
The node applies the result live (:meth:`~camfleet.runtime.control.NodeControl.apply_config`):
a command changes the running node only, and reading the configuration file again resets it,
as a restart resets Frigate's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from camfleet.config import CameraConfig, Config
from camfleet.config.cameras import MotionSettings
from camfleet.pipeline.motion import FRIGATE_MOTION_ROWS, MotionConfig

__all__ = ["SWITCHES", "VALUES", "Command", "CommandError", "camera_states", "changed_config",
           "parse_command", "tracked_labels"]

SWITCHES = ("enabled", "detect", "recordings", "snapshots", "motion")
"""Commands taking ``ON`` / ``OFF``."""

VALUES = ("motion_threshold", "motion_contour_area")
"""Commands taking a whole number."""

_LIMITS = {"motion_threshold": (1, 255), "motion_contour_area": (0, 1_000_000)}


class CommandError(ValueError):
    """A command that is not carried out: unknown camera or command, bad payload, not allowed."""


@dataclass(frozen=True)
class Command:
    """One camera command: ``value`` is a bool for switches, an int for the motion values."""

    camera: str
    name: str
    value: bool | int

    @property
    def state(self) -> str:
        """The payload of its ``/state`` topic (``ON`` / ``OFF`` or the number)."""
        if isinstance(self.value, bool):
            return "ON" if self.value else "OFF"
        return str(self.value)


def parse_command(topic: str, payload: bytes, prefix: str) -> Command:
    """The command a message on ``<prefix>/<camera>/<command>/set`` carries; CommandError if none."""
    parts = topic.split("/")
    head = prefix.split("/")
    if parts[: len(head)] != head or len(parts) != len(head) + 3 or parts[-1] != "set":
        raise CommandError(f"not a camera command topic: {topic!r}")
    camera, name = parts[len(head)], parts[len(head) + 1]
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError(f"{topic}: the payload is not text") from None
    if name in SWITCHES:
        if text.upper() not in ("ON", "OFF"):
            raise CommandError(f"{topic}: expected ON or OFF, got {text[:40]!r}")
        return Command(camera, name, text.upper() == "ON")
    if name in VALUES:
        low, high = _LIMITS[name]
        try:
            number = int(text)
        except ValueError:
            raise CommandError(f"{topic}: expected a whole number, got {text[:40]!r}") from None
        if not low <= number <= high:
            raise CommandError(f"{topic}: {number} is outside {low}..{high}")
        return Command(camera, name, number)
    raise CommandError(f"{topic}: camfleet does not take the command {name!r} (see docs/mqtt.md)")


def _camera_change(cam: CameraConfig, command: Command) -> dict[str, Any]:
    value = command.value
    match command.name:
        case "enabled":
            return {"enabled": value}
        case "detect":
            update: dict[str, Any] = {"detect": cam.detect.model_copy(update={"enabled": value})}
            if value and not cam.motion.enabled:  # detection needs motion (Frigate turns it on too)
                update["motion"] = cam.motion.model_copy(update={"enabled": True})
            return update
        case "recordings":
            return {"record": cam.record.model_copy(update={"enabled": value})}
        case "snapshots":
            return {"snapshots": cam.snapshots.model_copy(update={"enabled": value})}
        case "motion":
            if not value and cam.detect.enabled:
                raise CommandError(f"{command.camera}: turning off motion is not allowed while detection "
                                   "is on (as in Frigate); turn detect off first")
            return {"motion": cam.motion.model_copy(update={"enabled": value})}
        case "motion_threshold" | "motion_contour_area":
            key = command.name.removeprefix("motion_")
            motion = MotionSettings.model_validate({**cam.motion.model_dump(), key: value})
            return {"motion": motion}
    raise CommandError(f"unknown command {command.name!r}")


def changed_config(config: Config, command: Command) -> Config:
    """``config`` with ``command`` carried out (the same object when it changes nothing)."""
    cam = config.cameras.get(command.camera)
    if cam is None:
        raise CommandError(f"no camera {command.camera!r}")
    new_cam = cam.model_copy(update=_camera_change(cam, command))
    if new_cam == cam:
        return config
    # model_copy keeps the private attributes (where the file was read from, its directory)
    return config.model_copy(update={"cameras": {**config.cameras, command.camera: new_cam}})


def camera_states(config: Config, camera: str) -> dict[str, str]:
    """The ``<camera>/<command>/state`` payloads of ``camera`` under ``config``.

    Without a camera override, ``motion_threshold`` is the motion element's ``threshold`` and
    ``motion_contour_area`` its ``contour_area``, or its ``min_area`` (a fraction of the frame)
    in pixels of a 100-row picture of the camera's aspect (16:9 when its size is not set).
    """
    cam = config.camera(camera)
    on = {True: "ON", False: "OFF"}
    params = next((e.params for e in config.pipeline_of(camera) if e.name == "motion"), {})
    element = MotionConfig.model_validate(params)
    threshold = cam.motion.threshold if cam.motion.threshold is not None else element.threshold
    area = cam.motion.contour_area if cam.motion.contour_area is not None else element.contour_area
    if area is None:
        aspect = (cam.detect.width / cam.detect.height) if cam.detect.width and cam.detect.height else 16 / 9
        area = round(element.min_area * FRIGATE_MOTION_ROWS * FRIGATE_MOTION_ROWS * aspect)
    return {
        "enabled": on[cam.enabled],
        "detect": on[cam.detect.enabled],
        "recordings": on[cam.record.enabled],
        "snapshots": on[cam.snapshots.enabled],
        "motion": on[cam.motion.enabled],
        "motion_threshold": str(threshold),
        "motion_contour_area": str(area),
    }


def tracked_labels(config: Config) -> dict[str, set[str]]:
    """The labels each camera and zone counts: its detect elements' ``labels`` (a zone's own if set).

    A detect element without ``labels`` detects every label of its model: those have counts
    once an object of the label was seen. Zones of one name on several cameras share a count.
    """
    out: dict[str, set[str]] = {}
    for camera, cam in config.cameras.items():
        labels: set[str] = set()
        for element in config.pipeline_of(camera):
            given = element.params.get("labels") if element.name == "detect" else None
            if isinstance(given, list):
                labels |= {x for x in given if isinstance(x, str)}
        out.setdefault(camera, set()).update(labels)
        for zone, z in cam.zones.items():
            out.setdefault(zone, set()).update(z.labels if z.labels else labels)
    return out
