"""camfleet's configuration, status and events in the shapes Frigate's HTTP API gives them.

Pure functions, no I/O: the router (:mod:`camfleet.api.routers.frigate_compat`)
reads the node, the store and the files and hands the data in. The shapes are
what Home Assistant's Frigate integration
(``blakeblackshear/frigate-hass-integration``) reads, field by field; values
camfleet does not have (audio, sub labels, Frigate+) are reported as absent or
off, never invented. Times are epoch seconds, sizes of frames in pixels, disk
sizes in MiB (as Frigate reports them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from camfleet import __version__
from camfleet.config import Config
from camfleet.pipeline.detect import DetectConfig
from camfleet.pipeline.motion import MotionConfig
from camfleet.pipeline.snapshot import SnapshotConfig
from camfleet.runtime.control import CameraStatus, NodeStatus, ProcessStatus
from camfleet.vocabulary import Event

FRIGATE_API_LEVEL = "0.16.0"
"""The Frigate release whose HTTP API shapes are served (the integration accepts 0.12.0 and later)."""
FRIGATE_CONFIG_VERSION = "0.16-0"
"""``version`` of the served configuration: the integration enables 0.16 features (camera on/off) from it."""
DEFAULT_TOPIC_PREFIX = "frigate"
DEFAULT_CLIENT_ID = "frigate"
FRIGATE_MOTION_HEIGHT = 100
"""Rows of Frigate's motion frame: its ``contour_area`` is a pixel count at this height."""
_E = TypeVar("_E", bound=BaseModel)


def version_string() -> str:
    """What ``GET /api/version`` answers: the emulated Frigate API level, then camfleet's version.

    The integration compares the part before the first ``-`` with 0.12.0.
    """
    return f"{FRIGATE_API_LEVEL}-camfleet{__version__}"


# ----------------------------------------------------------------------------- configuration


def mqtt_shape(section: object | None) -> dict[str, Any]:
    """The ``mqtt`` section as Frigate reports it, read defensively from camfleet's (if it has one).

    ``topic_prefix`` and ``client_id`` default to ``frigate`` like Frigate's;
    no credential is ever included.
    """
    prefix = getattr(section, "topic_prefix", None)
    client_id = getattr(section, "client_id", None)
    host = getattr(section, "host", None)
    port = getattr(section, "port", None)
    # a section without a broker host (or switched off) publishes nothing
    enabled = section is not None and bool(getattr(section, "enabled", True)) and bool(host)
    return {
        "enabled": enabled,
        "host": host if isinstance(host, str) else "",
        "port": port if isinstance(port, int) else 1883,
        "topic_prefix": prefix if isinstance(prefix, str) and prefix else DEFAULT_TOPIC_PREFIX,
        "client_id": client_id if isinstance(client_id, str) and client_id else DEFAULT_CLIENT_ID,
    }


def _element(config: Config, camera: str, name: str) -> dict[str, Any] | None:
    """The settings of the first ``name`` element of ``camera``'s pipeline (None: the pipeline has none)."""
    for spec in config.pipelines.get(config.cameras[camera].pipeline, []):
        if spec.name == name:
            return dict(spec.params)
    return None


def _settings(model: type[_E], params: Mapping[str, Any]) -> _E:
    try:
        return model.model_validate(dict(params))
    except ValidationError:  # checked when the configuration was loaded; defaults if an element changed
        return model()


def contour_area(min_area: float, width: int | None, height: int | None) -> int:
    """Motion ``min_area`` (camfleet's, a fraction of the frame) as Frigate's ``contour_area``.

    Frigate counts pixels of its motion frame, :data:`FRIGATE_MOTION_HEIGHT`
    rows high with the camera's aspect ratio (16:9 when the size is not configured).
    """
    aspect = width / height if width and height else 16 / 9
    return max(0, round(min_area * FRIGATE_MOTION_HEIGHT * FRIGATE_MOTION_HEIGHT * aspect))


def _min_scores(detect: DetectConfig, labels: Iterable[str]) -> dict[str, dict[str, float]]:
    ms = detect.min_score
    out: dict[str, dict[str, float]] = {}
    for label in labels:
        score = float(ms.get(label, ms.get("default", 0.5))) if isinstance(ms, dict) else float(ms)
        out[label] = {"min_score": score}
    return out


def _coordinates(points: Sequence[Sequence[float]]) -> str:
    """A polygon as Frigate writes it: ``"x1,y1,x2,y2,..."``, relative (0..1) coordinates."""
    return ",".join(f"{round(float(c), 4):g}" for point in points for c in point[:2])


def camera_shape(config: Config, name: str, labels: Sequence[str], order: int) -> dict[str, Any]:
    """One camera of ``GET /api/config``.

    ``labels``: what the camera's detector reports (its ``detect`` element's
    ``labels``, else the model's), i.e. Frigate's ``objects.track``.
    """
    cam = config.cameras[name]
    motion_params = _element(config, name, "motion")
    detect_params = _element(config, name, "detect")
    snapshot_params = _element(config, name, "snapshot")
    motion = _settings(MotionConfig, motion_params or {})
    detect = _settings(DetectConfig, detect_params or {})
    snapshot = _settings(SnapshotConfig, snapshot_params or {})
    width, height = cam.detect.width, cam.detect.height
    track = list(labels) if detect_params is not None else []
    motion_on = motion_params is not None and cam.motion.enabled
    snaps_on = snapshot_params is not None and cam.snapshots.enabled
    return {
        "name": name,
        "enabled": cam.enabled,
        "enabled_in_config": cam.enabled,
        # camfleet has no audio detection; the integration reads enabled_in_config and listen
        "audio": {"enabled": False, "enabled_in_config": False, "listen": []},
        # the camera's live switches (set by MQTT commands) win over what its pipeline holds
        "detect": {"enabled": detect_params is not None and cam.detect.enabled, "width": width,
                   "height": height, "fps": cam.detect.fps},
        "motion": {
            "enabled": motion_on, "enabled_in_config": motion_on,
            "threshold": cam.motion.threshold or motion.threshold,
            "contour_area": (cam.motion.contour_area if cam.motion.contour_area is not None
                             else motion.contour_area if motion.contour_area is not None
                             else contour_area(motion.min_area, width, height)),
            "improve_contrast": False, "mask": [],
        },
        "objects": {"track": track, "filters": _min_scores(detect, track)},
        "record": {"enabled": cam.record.enabled, "enabled_in_config": cam.record.enabled},
        "snapshots": {
            "enabled": snaps_on, "enabled_in_config": snaps_on,
            "bounding_box": snapshot.boxes, "quality": snapshot.quality,
            "height": snapshot.height or None,
        },
        "zones": {
            zone: {"coordinates": _coordinates(z.points), "objects": list(z.labels or [])}
            for zone, z in cam.zones.items()
        },
        "onvif": {"autotracking": {"enabled": False, "enabled_in_config": False}},
        "birdseye": {"enabled": False},
        "ui": {"order": order, "dashboard": True},
        # no go2rtc restream: the integration then offers a still image, no stream
        "live": {"streams": {}},
    }


def config_shape(config: Config, labels: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """``GET /api/config``: the node's configuration in Frigate's shape (no credentials).

    ``labels`` maps each camera to the labels it tracks (see :func:`camera_shape`).
    The ``mqtt`` section is camfleet's own when it has one (``topic_prefix``
    ``frigate`` otherwise).
    """
    cameras = {
        name: camera_shape(config, name, labels.get(name, ()), order)
        for order, name in enumerate(sorted(config.cameras))
    }
    tracked = sorted({label for cam in cameras.values() for label in cam["objects"]["track"]})
    return {
        "version": FRIGATE_CONFIG_VERSION,
        "mqtt": mqtt_shape(getattr(config, "mqtt", None)),
        "cameras": cameras,
        "objects": {"track": tracked},
        # no attribute labels (faces, plates, logos): the integration makes no sensors for them
        "model": {"all_attributes": [], "non_logo_attributes": []},
        "detectors": {name: {"type": d.runtime} for name, d in config.detectors.items()},
        "birdseye": {"enabled": False, "restream": False},
        "go2rtc": {"streams": {}},
        "camera_groups": {},
    }


# ----------------------------------------------------------------------------- stats


@dataclass(frozen=True)
class DiskUsage:
    """A filesystem's size, use and free space, in bytes."""

    total: int
    used: int
    free: int


def _mib(n: int) -> float:
    return round(n / 2**20, 1)


def _camera_stats(cam: CameraStatus) -> dict[str, Any]:
    ingest = cam.processes.get("ingest")
    pipeline = cam.processes.get("pipeline")
    ingest_pid = ingest.pid if ingest is not None else None
    return {
        "camera_fps": round(cam.decode_fps, 2),
        "process_fps": round(cam.processed_fps, 2),
        "skipped_fps": round(cam.skipped_fps, 2),
        "detection_fps": round(cam.detector_rps, 2),
        "detection_enabled": pipeline is not None,
        "pid": pipeline.pid if pipeline is not None else None,
        # camfleet demuxes and decodes in one ingest process: it is both Frigate's capture and ffmpeg
        "capture_pid": ingest_pid,
        "ffmpeg_pid": ingest_pid,
    }


def _cpu_usages(procs: Iterable[ProcessStatus], mem_total_mb: float) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for proc in procs:
        if proc.pid is None:
            continue
        mem = 100.0 * proc.rss_mb / mem_total_mb if mem_total_mb > 0 else 0.0
        # Frigate reports top's columns, as text
        out[str(proc.pid)] = {"cpu": f"{proc.cpu_percent:.1f}", "mem": f"{mem:.1f}"}
    return out


def stats_shape(status: NodeStatus, cameras: Iterable[str], storage: Mapping[str, DiskUsage | None],
                mem_total_mb: float, now: float) -> dict[str, Any]:
    """``GET /api/stats``: per camera rates and pids, detectors, totals, service, CPU per process.

    ``cameras``: the cameras of the configuration served by ``/api/config``
    (the integration looks each camera of the stats up there, so no other is
    listed); ``storage``: disk use per directory (None: unavailable);
    ``mem_total_mb``: the machine's memory (for ``cpu_usages.*.mem``, percent).
    """
    wanted = set(cameras)
    cams = {name: _camera_stats(c) for name, c in sorted(status.cameras.items()) if name in wanted}
    detectors = {
        name: {"inference_speed": round(float(d.metrics.get("inference_ms", 0.0)), 2),
               "detection_start": 0.0, "pid": d.pid}
        for name, d in sorted(status.detectors.items())
    }
    procs = [p for name, c in status.cameras.items() if name in wanted for p in c.processes.values()]
    procs += list(status.detectors.values())
    disks: dict[str, dict[str, Any]] = {}
    for path, usage in storage.items():
        disks[path] = {} if usage is None else {
            "total": _mib(usage.total), "used": _mib(usage.used), "free": _mib(usage.free),
            "mount_type": "",
        }
    return {
        "cameras": cams,
        "detectors": detectors,
        "camera_fps": round(sum(c["camera_fps"] for c in cams.values()), 2),
        "process_fps": round(sum(c["process_fps"] for c in cams.values()), 2),
        "skipped_fps": round(sum(c["skipped_fps"] for c in cams.values()), 2),
        "detection_fps": round(sum(c["detection_fps"] for c in cams.values()), 2),
        "cpu_usages": _cpu_usages(procs, mem_total_mb),
        "service": {
            "uptime": max(0, int(now - status.started_at)),
            "version": version_string(),
            # "disabled": the integration's update entity then offers no Frigate release to install
            "latest_version": "disabled",
            "storage": disks,
            "temperatures": {},
            "last_updated": int(now),
        },
        "processes": {},
    }


# ----------------------------------------------------------------------------- events


def relative_box(box: object, frame: tuple[int, int] | None) -> list[float] | None:
    """A camfleet pixel box ``[x0, y0, x1, y1]`` as Frigate's ``data.box``: ``[x, y, w, h]`` in 0..1.

    ``frame`` is the detect frame's (width, height); None when unknown, or the box is malformed.
    """
    if frame is None or not isinstance(box, list | tuple) or len(box) != 4:
        return None
    if not all(isinstance(v, int | float) for v in box):
        return None
    fw, fh = frame
    if fw <= 0 or fh <= 0:
        return None
    x0, y0, x1, y1 = (float(v) for v in box)
    return [round(x0 / fw, 4), round(y0 / fh, 4), round(max(0.0, x1 - x0) / fw, 4),
            round(max(0.0, y1 - y0) / fh, 4)]


def event_shape(event: Event, *, has_clip: bool, frame: tuple[int, int] | None) -> dict[str, Any]:
    """One event as ``GET /api/events/<id>`` (and each item of ``/api/events``) gives it.

    ``has_clip``: recordings cover the event; ``frame``: the detect frame's
    size in pixels, for the relative box (None: no box).
    """
    score = float(event.top_score)
    data: dict[str, Any] = {"type": "object", "score": score, "top_score": score, "attributes": []}
    box = relative_box(event.data.get("box"), frame)
    if box is not None:
        data["box"] = box
    return {
        "id": event.id,
        "camera": event.camera,
        "label": event.label,
        "sub_label": None,
        "start_time": event.start,
        "end_time": event.end,
        "top_score": score,
        "score": score,
        # an event is reported only once its object was seen on min_frames frames: a true positive
        "false_positive": False,
        "zones": list(event.zones),
        "thumbnail": None,
        "has_clip": has_clip,
        "has_snapshot": event.snapshot is not None,
        "retain_indefinitely": event.retained,
        "plus_id": None,
        "model_hash": None,
        "detector_type": None,
        "model_type": None,
        "box": None,
        "area": None,
        "ratio": None,
        "region": None,
        "data": data,
    }


def parse_list(value: str | None) -> frozenset[str] | None:
    """A Frigate filter parameter (``"a,b"``; ``"all"`` or absent: no filter) as a set."""
    if value is None:
        return None
    items = frozenset(v.strip() for v in value.split(",") if v.strip())
    if not items or "all" in items:
        return None
    return items


@dataclass(frozen=True)
class EventFilter:
    """The ``/api/events`` filters camfleet can answer (each None: not filtered).

    ``sub_labels``: camfleet events have none, so only ``None`` among them matches.
    """

    cameras: frozenset[str] | None = None
    labels: frozenset[str] | None = None
    zones: frozenset[str] | None = None
    sub_labels: frozenset[str] | None = None
    has_snapshot: bool | None = None
    in_progress: bool | None = None
    favorites: bool | None = None

    def single(self, values: frozenset[str] | None) -> str | None:
        """The one value of a filter the store can apply itself (None: none, or several)."""
        return next(iter(values)) if values is not None and len(values) == 1 else None

    def matches(self, event: Event) -> bool:
        """Whether ``event`` passes every filter (``has_clip`` is checked apart: it needs the store)."""
        if self.cameras is not None and event.camera not in self.cameras:
            return False
        if self.labels is not None and event.label not in self.labels:
            return False
        if self.zones is not None:
            wanted = set(self.zones)
            none_wanted = "None" in wanted
            if not (wanted & set(event.zones)) and not (none_wanted and not event.zones):
                return False
        if self.sub_labels is not None and "None" not in self.sub_labels:
            return False
        if self.has_snapshot is not None and (event.snapshot is not None) != self.has_snapshot:
            return False
        if self.in_progress is not None and (event.end is None) != self.in_progress:
            return False
        return not (self.favorites and not event.retained)
