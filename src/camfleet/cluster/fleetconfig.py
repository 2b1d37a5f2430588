"""A fleet configuration: cameras as in a node YAML, each with optional placement hints; checked as a whole.

::

    cameras:
      door:
        sources: [{url: "rtsp://...", roles: [detect, record]}]
        placement:                 # optional, read by the coordinators only (never sent to a node)
          labels: {zone: north}    # the node must carry these labels
          group: porch             # anti-affinity group: cameras of one area on different nodes
          hardware: {gpu: 1}       # exclusive units the camera needs
          codec: h264              # what the node must decode (default h264)
          stream: {width: 1920, height: 1080, fps: 15}   # the decoded stream (demand), or:
          decode_pps: 31104000     # decode demand in pixels/s, and
          infer_ps: 5              # detector demand in inferences/s (default: detect fps, 0 when off)
          pin: NODE_ID             # the only node it may run on

Every camera's settings are validated by the real node configuration loader
against a *base* configuration (its models, detectors, pipelines and
defaults: the agents' own; by default camfleet's embedded default), so an
error names the camera and the key (``cameras.door.detect.fps: ...``).
"""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from camfleet.config import Config, ConfigError
from camfleet.config.sources import with_cameras
from camfleet.fleetstore.store import FleetCamera
from camfleet.pipeline.validate import element_catalog

from .placement_types import Camera

__all__ = [
    "FleetConfigError",
    "FleetValidator",
    "PlacementHints",
    "default_base",
    "placement_camera",
    "validate_fleet",
    "warm_up",
]

CHECK_CHUNK = 200
"""Cameras checked per call of the configuration loader by :class:`FleetValidator` (its cost per camera
grows with the size of one call: YAML written and parsed whole)."""
DEFAULT_STREAM = (1280, 720, 15.0)
"""The decoded stream assumed when neither ``stream``, ``detect`` size nor ``decode_pps`` says (w, h, fps)."""


class FleetConfigError(ValueError):
    """A fleet configuration that cannot be applied; ``issues`` name the camera and key of each problem."""

    def __init__(self, issues: list[str]) -> None:
        self.issues = issues
        count = len(issues)
        super().__init__(
            f"{count} problem{'s' if count != 1 else ''} in the fleet configuration:\n  "
            + "\n  ".join(issues)
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


class StreamSize(_Strict):
    """The decoded stream's size and rate (pixels, frames/s)."""

    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)
    fps: float = Field(gt=0, le=240)


class PlacementHints(_Strict):
    """Where a camera may run and what it costs (module docstring); demand in pixels/s, inferences/s."""

    labels: dict[str, str] = Field(default_factory=dict)
    group: str | None = Field(default=None, min_length=1, max_length=128)
    hardware: dict[str, int] = Field(default_factory=dict)
    codec: str = Field(default="h264", min_length=1, max_length=32)
    pin: str | None = Field(default=None, min_length=1, max_length=128)
    stream: StreamSize | None = None
    decode_pps: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    infer_ps: float | None = Field(default=None, ge=0, allow_inf_nan=False)


@functools.cache
def default_base() -> Config:
    """The embedded default configuration (what an agent without ``--config`` runs), as the base."""
    from camfleet.runtime.default import default_config  # noqa: PLC0415 - heavy; only when checking

    return default_config(Path(tempfile.gettempdir()) / "camfleet-fleet-check", cameras=1)


def warm_up() -> None:
    """Load the base configuration and the pipeline elements now (not on the first apply's path)."""
    default_base()
    element_catalog()


def _hints(name: str, raw: Any, issues: list[str]) -> PlacementHints | None:
    if raw is None:
        return PlacementHints()
    try:
        return PlacementHints.model_validate(raw, strict=False)
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            issues.append(f"cameras.{name}.placement{'.' + where if where else ''}: {e['msg']}")
        return None


def validate_fleet(cameras: Any, base: Config | None = None) -> dict[str, FleetCamera]:
    """Check a whole fleet's ``cameras`` mapping; the cameras with resolved placement hints.

    Raises :class:`FleetConfigError` listing every problem, each naming the camera and key.
    """
    if not isinstance(cameras, dict):
        raise FleetConfigError(
            [f"cameras: expected a mapping of camera name to settings, got {type(cameras).__name__}"]
        )
    issues: list[str] = []
    settings: dict[str, dict[str, Any]] = {}
    hints: dict[str, PlacementHints] = {}
    for name, raw in cameras.items():
        if not isinstance(name, str) or not name or len(name) > 128 or any(c in name for c in ". *>\t\n"):
            issues.append(
                f"cameras.{name!r}: a camera name is 1-128 characters without '.', '*', '>' or spaces"
            )
            continue
        if not isinstance(raw, dict):
            issues.append(f"cameras.{name}: expected a mapping of settings, got {type(raw).__name__}")
            continue
        body = {k: v for k, v in raw.items() if k != "placement"}
        h = _hints(name, raw.get("placement"), issues)
        if h is not None:
            hints[name] = h
        settings[name] = body
    validated: Config | None = None
    if settings:
        try:
            validated = with_cameras(base or default_base(), settings, elements=element_catalog())
        except ConfigError as exc:
            for issue in exc.issues:
                text = f"{issue.path}: {issue.message}" if issue.path else issue.message
                issues.append(text + (f" ({issue.suggestion})" if issue.suggestion else ""))
    if issues or validated is None:
        if issues:
            raise FleetConfigError(issues)
        return {}
    out: dict[str, FleetCamera] = {}
    for name in sorted(settings):
        cam = validated.cameras[name]
        h = hints[name]
        width, height, fps = DEFAULT_STREAM
        if cam.detect.width and cam.detect.height:
            width, height = cam.detect.width, cam.detect.height
        if h.stream is not None:
            width, height, fps = h.stream.width, h.stream.height, h.stream.fps
        decode = h.decode_pps if h.decode_pps is not None else float(width * height) * fps
        infer = (
            h.infer_ps
            if h.infer_ps is not None
            else (cam.detect.fps if cam.enabled and cam.detect.enabled else 0.0)
        )
        if not cam.enabled:
            decode = 0.0 if h.decode_pps is None else decode
        resolved = h.model_dump(mode="json", exclude={"stream"}) | {"decode_pps": decode, "infer_ps": infer}
        out[name] = FleetCamera(name, settings[name], resolved)
    return out


class FleetValidator:
    """:func:`validate_fleet` that checks each camera once: what changed, not the whole fleet again.

    Every check of a camera depends on that camera and the ``base`` only (its
    pipeline, models and detectors are the base's; the names are unique as
    keys): a camera whose settings are exactly those already checked against
    this base (the same JSON) is not checked again. Staging 20,000 cameras in
    pages therefore costs each camera one check, and the apply that follows
    checks only what was not staged through this validator (the cameras a
    previous leader applied). Not thread-safe: one caller at a time.
    """

    def __init__(self, base: Config | None = None) -> None:
        self.base = base
        # name -> (the JSON of the settings as given and as stored, i.e. with resolved hints; the result)
        self._known: dict[str, tuple[tuple[str, ...], FleetCamera]] = {}
        self.checked = 0  # cameras actually run through the loader (for tests and logs)

    def validate(self, cameras: Any) -> dict[str, FleetCamera]:
        """As :func:`validate_fleet` (same result, same :class:`FleetConfigError`), known cameras skipped."""
        if not isinstance(cameras, dict):
            return validate_fleet(cameras, self.base)
        out: dict[str, FleetCamera] = {}
        todo: dict[Any, Any] = {}
        keys: dict[Any, str | None] = {}
        for name, raw in cameras.items():
            try:
                key: str | None = _key(raw)
            except (TypeError, ValueError):  # not JSON: the loader says what is wrong with it
                key = None
            hit = self._known.get(name) if isinstance(name, str) else None
            if key is not None and hit is not None and key in hit[0]:
                out[name] = hit[1]
            else:
                todo[name] = raw
                keys[name] = key
        issues: list[str] = []
        names = list(todo)
        for i in range(0, len(names), CHECK_CHUNK):
            chunk = {n: todo[n] for n in names[i : i + CHECK_CHUNK]}
            self.checked += len(chunk)
            try:
                checked = validate_fleet(chunk, self.base)
            except FleetConfigError as exc:
                issues += exc.issues
                continue
            for name, cam in checked.items():
                out[name] = cam
                key = keys[name]
                if key is not None:
                    # the store keeps the resolved hints: what a later apply reads back is known too
                    # (checking it again gives the same camera)
                    self._known[name] = ((key, _key(cam.settings | {"placement": cam.placement})), cam)
        if issues:
            raise FleetConfigError(issues)
        return {n: out[n] for n in sorted(out)}

    def retain(self, names: Iterable[str]) -> None:
        """Forget every camera not in ``names`` (the fleet's and the staged): memory bounded by the fleet."""
        keep = set(names)
        self._known = {n: v for n, v in self._known.items() if n in keep}


def _key(raw: Any) -> str:
    """Settings as canonical JSON (equal settings, equal text; ``1`` and ``true`` differ)."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def placement_camera(cam: FleetCamera) -> Camera:
    """The scheduler's view of a fleet camera (from its resolved placement hints)."""
    p = cam.placement
    return Camera(
        cam.name,
        float(p.get("decode_pps") or 0.0),
        float(p.get("infer_ps") or 0.0),
        codec=str(p.get("codec") or "h264"),
        selector=dict(p.get("labels") or {}),
        hardware=dict(p.get("hardware") or {}),
        group=p.get("group"),
        pin=p.get("pin"),
    )
