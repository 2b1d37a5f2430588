"""The whole conversion: a Frigate configuration (parsed YAML) to camfleet's, with notes.

Frigate merges its global ``detect``, ``objects``, ``motion``, ``record`` and
``ffmpeg`` into every camera; this does the same, then converts each camera
on its own (:mod:`.sources`, :mod:`.geometry`, :mod:`.record`,
:mod:`.objects`). camfleet sets labels, scores and motion in a camera's
*pipeline*, so cameras with the same settings share one pipeline (the first
is ``default``; a camera with other settings gets a pipeline named after it).
Every camera detects with camfleet's default model (the SSD MobileNet v2 COCO
model Frigate ships as its default too, where ``camfleet models fetch`` puts
it) on a CPU
detector service; Frigate's ``detectors`` and ``model`` are noted.

``detect.enabled`` defaults to true before 0.16 and to false from 0.16 (as
the brief for this importer gives it); a camera that does not detect runs a
``motion`` only pipeline (camfleet always reads the detect stream).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from camfleet.config.base import CAMERA_NAME_PATTERN
from camfleet.detect.models import DEFAULT_LABELS_FILE, DEFAULT_MODEL_FILE
from camfleet.importers.notes import ImportResult, Notes

from .geometry import Size, masks, polygon
from .objects import detect_settings, motion_settings
from .record import convert_record
from .sources import convert_sources, frigate_vars, go2rtc_streams
from .version import FrigateVersion, frigate_version

__all__ = ["convert"]

_MERGED = ("detect", "objects", "motion", "record", "ffmpeg")
_PIXEL_SIZE_BEFORE_014: Size = (1280, 720)  # Frigate's default detect size before 0.14
_MODEL_ID = "ssd-mobilenet-v2"
# where `camfleet models fetch` puts the default model (camfleet.detect.models.models_dir), in the
# file's own ${VAR:-fallback} form so that the result does not depend on the machine that converted it
_MODELS_DIR = "${CAMFLEET_DATA_DIR:-~/.local/share/camfleet}/models"
_VAR = re.compile(r"\$\{(FRIGATE_[A-Za-z0-9_]+)\}")
_DETECTOR = "cpu"

_TOP_LEVEL_WHY = {
    "mqtt": "",  # handled by _mqtt
    "database": "camfleet keeps its database in data_dir (or storage.database)",
    "detectors": "every camera detects with camfleet's default model on a CPU detector service "
                 "(models/detectors in the output)",
    "model": "camfleet's default model is used (the same SSD MobileNet v2 COCO model)",
    "birdseye": "camfleet has no composite view",
    "snapshots": "camfleet's snapshot element keeps the best frame of every event",
    "logger": "see camfleet's logging section",
    "environment_vars": "set them in camfleet's own environment (${NAME} in the file)",
    "go2rtc": "camfleet reads cameras itself; restream URLs were resolved to their sources",
    "ui": "camfleet's web UI has no such settings",
    "telemetry": "see camfleet status and /metrics",
    "audio": "camfleet does not analyse audio",
    "auth": "see camfleet's api section and camfleet token",
    "tls": "see camfleet's api section",
    "proxy": "see camfleet's api section",
    "timestamp_style": "camfleet does not draw timestamps",
    "live": "camfleet serves live view from its frame ring",
    "review": "camfleet has events, not review items",
    "notifications": "camfleet has no push notifications",
    "semantic_search": "camfleet has no semantic search",
    "face_recognition": "camfleet has no face recognition",
    "lpr": "camfleet has no licence plate recognition",
    "genai": "camfleet has no generative AI descriptions",
    "classification": "camfleet has no custom classification",
    "camera_groups": "camfleet has no camera groups",
    "networking": "see camfleet's api section",
}
_CAMERA_WHY = {
    "snapshots": "camfleet's snapshot element keeps the best frame of every event",
    "birdseye": "camfleet has no composite view",
    "live": "camfleet serves live view from its frame ring",
    "ui": "camfleet's web UI has no such settings",
    "onvif": "camfleet has no PTZ control",
    "mqtt": "camfleet publishes every camera's snapshot as it is (no per-camera crop, size or zones)",
    "audio": "camfleet does not analyse audio",
    "review": "camfleet has events, not review items",
    "notifications": "camfleet has no push notifications",
    "timestamp_style": "camfleet does not draw timestamps",
    "best_image_timeout": "camfleet's snapshot element picks the best frame itself",
    "webui_url": "camfleet's web UI has no such settings",
    "genai": "camfleet has no generative AI descriptions",
    "semantic_search": "camfleet has no semantic search",
    "face_recognition": "camfleet has no face recognition",
    "lpr": "camfleet has no licence plate recognition",
    "type": "camfleet has one kind of camera",
    "friendly_name": "camfleet names a camera by its key",
}
_ZONE_KEYS = {"coordinates", "objects"}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Frigate's merge of a global section and a camera's: mappings key by key, the camera's values win."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(_map(out[k]), v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _even(n: Any) -> int | None:
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        return None
    return n - n % 2


_MQTT_TEXT = ("host", "user", "password", "topic_prefix", "client_id")
_MQTT_NUMBERS = {"port": (1, 65535), "qos": (0, 2), "stats_interval": (15, 86400)}
_MQTT_TLS = {"tls_ca_certs": "ca", "tls_client_cert": "cert", "tls_client_key": "key"}


def _mqtt(mqtt: Any, notes: Notes) -> dict[str, Any] | None:
    """Frigate's ``mqtt`` as camfleet's (the same broker, topics and payloads); None without a host."""
    m = _map(mqtt)
    host = m.get("host")
    if not isinstance(host, str) or not host:
        why = "disabled in Frigate, without a host" if m.get("enabled", True) is False else "no host given"
        notes.unmapped("mqtt", why)
        return None
    out: dict[str, Any] = {}
    if m.get("enabled", True) is False:
        out["enabled"] = False
        notes.converted("mqtt.enabled", "disabled in Frigate: written with enabled: false")
    for key in _MQTT_TEXT:
        value = m.get(key)
        if isinstance(value, str) and value:
            out[key] = frigate_vars(value)
        elif key in m:
            notes.unmapped(f"mqtt.{key}", "not a text value")
    for key, (low, high) in _MQTT_NUMBERS.items():
        value = m.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            out[key] = value
        elif key in m:
            notes.unmapped(f"mqtt.{key}", f"camfleet takes a whole number from {low} to {high}")
    tls = {ours: frigate_vars(str(m[theirs])) for theirs, ours in _MQTT_TLS.items() if m.get(theirs)}
    if isinstance(m.get("tls_insecure"), bool):
        tls["insecure"] = m["tls_insecure"]
    if tls:
        out["tls"] = tls
        if ("cert" in tls) != ("key" in tls):
            notes.unmapped("mqtt.tls_client_cert", "camfleet needs both the client certificate and its key")
            tls.pop("cert", None)
            tls.pop("key", None)
    if "qos" not in out:
        notes.converted("mqtt.qos", "camfleet publishes with QoS 1 by default (Frigate: 0), so that the "
                        "broker acknowledges each event and an outage loses none")
    if "password" in out and not out["password"].startswith("${"):
        # the value itself never goes into a note
        notes.converted("mqtt.password", "copied as it is into the output; better: password: "
                        "${MQTT_PASSWORD} with the value in camfleet's environment")
    known = {*_MQTT_TEXT, *_MQTT_NUMBERS, *_MQTT_TLS, "tls_insecure", "enabled"}
    for other in sorted(str(k) for k in set(m) - known):
        notes.unmapped(f"mqtt.{other}", "camfleet has no such MQTT setting")
    return out


def _zones(zones: Any, size: Size, key: str, notes: Notes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in _map(zones).items():
        where = f"{key}.{name}"
        zone = _map(raw)
        points = polygon(zone.get("coordinates"), size, f"{where}.coordinates", notes)
        if points is None:
            continue
        converted: dict[str, Any] = {"points": points}
        objects = zone.get("objects")
        if isinstance(objects, str):
            objects = [objects]
        if isinstance(objects, list) and objects:
            converted["labels"] = [str(o) for o in objects]
        for other in sorted(set(zone) - _ZONE_KEYS):
            notes.unmapped(f"{where}.{other}", "camfleet zones have points and labels only")
        out[str(name)] = converted
    return out


def _camera(name: str, camera: Mapping[str, Any], frigate: Mapping[str, Any], version: FrigateVersion,
            streams: Mapping[str, list[str]], notes: Notes) -> tuple[dict[str, Any], str]:
    """The camfleet camera (without its pipeline) and the key of the pipeline it needs."""
    key = f"cameras.{name}"
    merged = {s: _merge(_map(frigate.get(s)), _map(camera.get(s))) for s in _MERGED}
    out: dict[str, Any] = {}
    if camera.get("enabled", True) is False:
        out["enabled"] = False
    out["sources"] = convert_sources(merged["ffmpeg"], streams, f"{key}.ffmpeg", notes)

    detect = merged["detect"]
    width, height = _even(detect.get("width")), _even(detect.get("height"))
    if version < (0, 14) and (width is None or height is None):
        width, height = _PIXEL_SIZE_BEFORE_014  # what Frigate itself used
        notes.converted(f"{key}.detect", f"no width/height: Frigate's default before 0.14, "
                                         f"{width}x{height}, is used")
    if (width, height) != (detect.get("width"), detect.get("height")) and "width" in detect:
        notes.converted(f"{key}.detect", "width and height rounded down to even numbers")
    settings: dict[str, Any] = {}
    if width is not None and height is not None:
        settings.update(width=width, height=height)
    fps = detect.get("fps")
    if isinstance(fps, int | float) and not isinstance(fps, bool) and 0 < fps <= 240:
        settings["fps"] = fps
    if settings:
        out["detect"] = settings
    for other in sorted(set(detect) - {"width", "height", "fps", "enabled"}):
        notes.unmapped(f"{key}.detect.{other}", "camfleet's track element has its own settings")
    size: Size = (width or _PIXEL_SIZE_BEFORE_014[0], height or _PIXEL_SIZE_BEFORE_014[1])

    zones = _zones(camera.get("zones"), size, f"{key}.zones", notes)
    if zones:
        out["zones"] = zones
    found = masks(merged["motion"].get("mask"), size, f"{key}.motion.mask", notes)
    object_masks = masks(merged["objects"].get("mask"), size, f"{key}.objects.mask", notes)
    if object_masks:
        notes.converted(f"{key}.objects.mask", "camfleet masks hide a region from motion and detection both")
    if found or object_masks:
        out["masks"] = found + object_masks

    out["record"] = convert_record(merged["record"], version, f"{key}.record", notes)

    detects = detect.get("enabled", version < (0, 16))
    motion = motion_settings(merged["motion"], f"{key}.motion", notes)
    pipeline: dict[str, Any] = {"motion": motion}
    if detects:
        pipeline["detect"] = detect_settings(merged["objects"], size, f"{key}.objects", notes)
    else:
        notes.converted(f"{key}.detect.enabled", "detection is off: the camera runs a motion-only pipeline")
    for other in sorted(set(camera) - set(_MERGED) - {"enabled", "zones"}):
        notes.unmapped(f"{key}.{other}", _CAMERA_WHY.get(other, "camfleet has no such camera setting"))
    return out, json.dumps(pipeline, sort_keys=True)


def _pipeline(settings: Mapping[str, Any]) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = [{"motion": dict(settings["motion"])}]
    if "detect" in settings:
        elements += [
            {"detect": {"model": _MODEL_ID, "detector": _DETECTOR, **settings["detect"]}},
            {"track": {}}, {"zones": {}}, {"events": {"min_frames": 3}}, {"snapshot": {}},
        ]
    return elements


def convert(frigate: Mapping[str, Any]) -> ImportResult:
    """``frigate`` (a parsed Frigate configuration, any release from 0.12) as a camfleet configuration.

    Returns the configuration as plain data and the notes: what was not mapped
    and why, and what was changed on the way. Never raises on odd input: what
    cannot be read is noted and left out.
    """
    notes = Notes()
    version = frigate_version(frigate)
    streams = {n: [frigate_vars(u) for u in urls]
               for n, urls in go2rtc_streams(frigate.get("go2rtc")).items()}
    mqtt = _mqtt(frigate["mqtt"], notes) if "mqtt" in frigate else None
    for section in sorted(set(frigate) - set(_MERGED) - {"cameras", "version", "mqtt"}):
        notes.unmapped(section, _TOP_LEVEL_WHY.get(section, "camfleet has no such section"))
    name_ok = re.compile(CAMERA_NAME_PATTERN)
    cameras: dict[str, Any] = {}
    keys: dict[str, str] = {}
    for raw_name, camera in _map(frigate.get("cameras")).items():
        name = str(raw_name)
        if not name_ok.match(name):
            notes.unmapped(f"cameras.{name}", "not a camfleet camera name (1-63 letters, digits, '_' or '-')")
            continue
        converted, pipeline_key = _camera(name, _map(camera), frigate, version, streams, notes)
        cameras[name] = converted
        keys[name] = pipeline_key

    pipelines: dict[str, list[dict[str, Any]]] = {}
    names: dict[str, str] = {}  # pipeline key -> pipeline name
    for name, pipeline_key in keys.items():
        if pipeline_key not in names:
            settings = json.loads(pipeline_key)
            pname = ("default" if "detect" in settings else "motion-only") if not pipelines else name
            suffix = 1
            while pname in pipelines:  # a camera called 'default', say
                suffix += 1
                pname = f"{name}-{suffix}"
            names[pipeline_key] = pname
            pipelines[pname] = _pipeline(settings)
        cameras[name]["pipeline"] = names[pipeline_key]

    config: dict[str, Any] = {
        "version": 1,
        "data_dir": "./camfleet-data",
        "models": {_MODEL_ID: {
            "path": f"{_MODELS_DIR}/{DEFAULT_MODEL_FILE}", "runtime": "tflite",
            "input": {"width": 300, "height": 300}, "labels": f"{_MODELS_DIR}/{DEFAULT_LABELS_FILE}",
        }},
        "detectors": {_DETECTOR: {"runtime": "tflite", "processes": 1, "threads": 2}},
        "pipelines": pipelines,
        "cameras": cameras,
    }
    if mqtt is not None:
        config["mqtt"] = mqtt
    needed = sorted(set(_VAR.findall(json.dumps([cameras, mqtt]))))
    if needed:
        notes.converted("{FRIGATE_*}", "written ${NAME}; set these in camfleet's environment: "
                        + ", ".join(needed))
    return ImportResult(config, notes.items)
