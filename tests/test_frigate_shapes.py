"""The Frigate shapes (``camfleet.api.frigate_shapes``) against what Home Assistant's integration reads.

Each assertion names the integration file (``custom_components/frigate/...`` of
blakeblackshear/frigate-hass-integration) and the expression there that reads
the field, so a change of either side shows which promise broke.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import jwt
import pytest

from camfleet.api import frigate_shapes as shapes
from camfleet.api.frigate_session import LEEWAY_S, Sessions, looks_like_jwt
from camfleet.config import Config
from camfleet.pipeline.validate import load_config_text
from camfleet.runtime.control import CameraStatus, NodeStatus, ProcessStatus
from camfleet.store import Store
from camfleet.vocabulary import Event

pytestmark = pytest.mark.unit

YAML = """
models:
  ssd: {path: model.tflite, runtime: tflite, input: {width: 300, height: 300}, labels: [person, car, cat]}
detectors:
  cpu: {runtime: tflite}
pipelines:
  full:
    - motion: {threshold: 30, min_area: 0.001}
    - detect: {model: ssd, detector: cpu, min_score: {default: 0.5, person: 0.7}, labels: [person, car]}
    - track: {}
    - zones: {}
    - events: {}
    - snapshot: {boxes: false, quality: 80}
  motion_only:
    - motion: {}
cameras:
  door:
    sources: [{url: "rtsp://admin:hunter2@10.0.0.5/main", roles: [detect, record]}]
    detect: {width: 640, height: 360, fps: 5}
    record: {enabled: true}
    pipeline: full
    zones:
      porch: {points: [[0.1, 0.5], [0.5, 0.5], [0.5, 1.0]], labels: [person]}
      drive: {points: [[0, 0], [1, 0], [1, 1]]}
  yard:
    enabled: false
    sources: [{url: "rtsp://10.0.0.6/main", roles: [detect]}]
    pipeline: motion_only
"""


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config_text(YAML)


LABELS = {"door": ["car", "person"], "yard": []}


def test_version_is_accepted_by_the_integration() -> None:
    v = shapes.version_string()
    # __init__.py async_setup_entry: AwesomeVersion(server_version.split("-")[0]) >= "0.12.0"
    level = tuple(int(x) for x in v.split("-")[0].split("."))
    assert level >= (0, 12, 0) and v.split("-")[0] == shapes.FRIGATE_API_LEVEL
    assert "camfleet" in v


def test_config_top_level(config: Config) -> None:
    c = shapes.config_shape(config, LABELS)
    # __init__.py async_setup_entry: WSEventProxy(hass, config["mqtt"]["topic_prefix"])
    assert c["mqtt"]["topic_prefix"] == "frigate"
    # views.py get_frigate_instance_id: config.get("mqtt", {}).get("client_id")
    assert c["mqtt"]["client_id"] == "frigate"
    # __init__.py verify_frigate_version: str(config.get("version", "0.14")) >= "0.16" (camera on/off)
    assert str(c["version"]) >= "0.16" and not str(c["version"]) >= "0.17"
    # __init__.py get_cameras_and_objects: config["model"].get("non_logo_attributes", ...)
    assert c["model"]["non_logo_attributes"] == [] and c["model"]["all_attributes"] == []
    # camera.py / __init__.py: config.get("birdseye", {}).get("restream", False)
    assert c["birdseye"]["restream"] is False
    # camera.py _get_stream_name: config.get("go2rtc", {}).get("streams", {})
    assert c["go2rtc"]["streams"] == {}
    # issue 16: objects.track
    assert c["objects"]["track"] == ["car", "person"]
    assert set(c["cameras"]) == {"door", "yard"}
    assert "hunter2" not in repr(c)  # no credential anywhere


def test_config_camera_fields(config: Config) -> None:
    door = shapes.config_shape(config, LABELS)["cameras"]["door"]
    # __init__.py get_cameras_and_objects: cam_config["objects"]["track"]
    assert door["objects"]["track"] == ["car", "person"]
    assert door["objects"]["filters"]["person"] == {"min_score": 0.7}
    assert door["objects"]["filters"]["car"] == {"min_score": 0.5}
    # __init__.py get_cameras_zones_and_objects: config["cameras"][cam]["zones"][zone].get("objects")
    assert door["zones"]["porch"]["objects"] == ["person"]
    assert door["zones"]["drive"]["objects"] == []  # empty: every label (the integration's reading too)
    assert door["zones"]["porch"]["coordinates"] == "0.1,0.5,0.5,0.5,0.5,1"
    # sensor.py async_setup_entry: frigate_config["cameras"][name]["audio"]["enabled_in_config"]
    # __init__.py get_cameras_and_audio: cam_config.get("audio", {}).get("listen", [])
    assert door["audio"] == {"enabled": False, "enabled_in_config": False, "listen": []}
    # number.py: ["cameras"][cam]["motion"]["threshold"] and ["motion"]["contour_area"]
    assert door["motion"]["threshold"] == 30
    assert door["motion"]["contour_area"] == round(0.001 * 100 * 100 * 640 / 360)
    # camera.py: camera_config.get("record", {}).get("enabled"), .get("motion", {}).get("enabled")
    assert door["record"]["enabled"] is True and door["motion"]["enabled"] is True
    # switch.py: .get("onvif", {}).get("autotracking", {}).get("enabled_in_config", False)
    assert door["onvif"]["autotracking"]["enabled_in_config"] is False
    # camera.py _get_stream_name: camera_config.get("live", {}).get("streams", {}) -> no stream offered
    assert door["live"]["streams"] == {}
    assert door["detect"] == {"enabled": True, "width": 640, "height": 360, "fps": 5.0}
    assert door["snapshots"]["enabled"] is True and door["snapshots"]["bounding_box"] is False
    assert door["snapshots"]["quality"] == 80 and door["name"] == "door"


def test_config_motion_only_and_disabled_camera(config: Config) -> None:
    yard = shapes.config_shape(config, LABELS)["cameras"]["yard"]
    assert yard["enabled"] is False and yard["detect"]["enabled"] is False
    assert yard["objects"]["track"] == [] and yard["snapshots"]["enabled"] is False
    assert yard["motion"]["threshold"] == 25  # the motion element's default
    assert yard["zones"] == {} and yard["record"]["enabled"] is False


def test_config_shows_the_cameras_live_switches() -> None:
    """MQTT commands set the camera's switches; the integration's switches and numbers read them back."""
    text = YAML.replace("    pipeline: full\n", "    pipeline: full\n    detect: {enabled: false}\n"
                        "    snapshots: {enabled: false}\n"
                        "    motion: {threshold: 40, contour_area: 25}\n", 1)
    text = text.replace("    detect: {width: 640, height: 360, fps: 5}\n", "", 1)
    door = shapes.config_shape(load_config_text(text), LABELS)["cameras"]["door"]
    assert door["detect"]["enabled"] is False and door["snapshots"]["enabled"] is False
    assert door["motion"]["threshold"] == 40 and door["motion"]["contour_area"] == 25
    assert door["motion"]["enabled"] is True


def test_mqtt_section_is_read_defensively() -> None:
    assert shapes.mqtt_shape(None)["topic_prefix"] == "frigate"
    assert shapes.mqtt_shape(None)["enabled"] is False
    section = SimpleNamespace(topic_prefix="cams", client_id="camfleet1", host="broker", port=8883,
                              password="pw-never-shown", user="u")
    got = shapes.mqtt_shape(section)
    assert got == {"enabled": True, "host": "broker", "port": 8883, "topic_prefix": "cams",
                   "client_id": "camfleet1"}
    assert shapes.mqtt_shape(SimpleNamespace(topic_prefix="", client_id=None))["topic_prefix"] == "frigate"
    assert shapes.mqtt_shape(SimpleNamespace(host=None, topic_prefix="x"))["enabled"] is False


def _status(now: float) -> NodeStatus:
    procs = {
        "ingest": ProcessStatus("ingest", "ingest", "healthy", pid=101, cpu_percent=12.34, rss_mb=100),
        "pipeline": ProcessStatus("pipeline", "pipeline", "healthy", pid=102, cpu_percent=5.0, rss_mb=50),
    }
    door = CameraStatus("door", "healthy", decode_fps=14.987, processed_fps=4.9, skipped_fps=0.1,
                        detector_rps=3.2, processes=procs)
    ghost = CameraStatus("ghost", "healthy", decode_fps=5.0)  # not in the served configuration
    det = ProcessStatus("cpu", "detector", "healthy", pid=200, cpu_percent=40.0, rss_mb=150,
                        metrics={"inference_ms": 48.123})
    return NodeStatus("local", 1, started_at=now - 3600.4, at=now, cameras={"door": door, "ghost": ghost},
                      detectors={"cpu": det})


def test_stats_fields() -> None:
    now = time.time()
    storage = {"/rec": shapes.DiskUsage(total=2**30, used=2**29, free=2**29), "/gone": None}
    s = shapes.stats_shape(_status(now), ["door"], storage, mem_total_mb=1000.0, now=now)
    # sensor.py: frigate_config["cameras"][name] for every camera of the stats -> none unknown
    assert set(s["cameras"]) == {"door"}
    door = s["cameras"]["door"]
    # camera.py available: .get("cameras", {}).get(cam, {}).get("camera_fps", 0) == 0 -> unavailable
    assert door["camera_fps"] == 14.99
    # sensor.py CameraFpsSensor: every "<type>_fps" key of a camera
    assert {k for k in door if k.endswith("_fps")} == {"camera_fps", "process_fps", "skipped_fps",
                                                       "detection_fps"}
    assert (door["process_fps"], door["skipped_fps"], door["detection_fps"]) == (4.9, 0.1, 3.2)
    # sensor.py CameraProcessCpuSensor: cameras[cam]["pid" | "capture_pid" | "ffmpeg_pid"] ->
    # cpu_usages[str(pid)]["cpu"], float()
    assert door["pid"] == 102 and door["capture_pid"] == 101 and door["ffmpeg_pid"] == 101
    assert float(s["cpu_usages"]["101"]["cpu"]) == pytest.approx(12.3)
    assert float(s["cpu_usages"]["102"]["mem"]) == pytest.approx(5.0)
    assert "ghost" not in repr(s["cpu_usages"]) and float(s["cpu_usages"]["200"]["cpu"]) == 40.0
    # sensor.py DetectorSpeedSensor: .get("detectors", {}).get(name, {}).get("inference_speed")
    assert s["detectors"]["cpu"]["inference_speed"] == 48.12
    # sensor.py FrigateFpsSensor: every top-level "<type>_fps" key
    assert s["camera_fps"] == 14.99 and s["detection_fps"] == 3.2
    # sensor.py FrigateUptimeSensor: .get("service", {}).get("uptime", 0)
    assert s["service"]["uptime"] == 3600
    # update.py: service.version split at "-"; latest_version "disabled" -> no update offered
    assert s["service"]["version"].split("-")[0] == shapes.FRIGATE_API_LEVEL
    assert s["service"]["latest_version"] == "disabled"
    # sensor.py DeviceTempSensor: service.get("temperatures", {})
    assert s["service"]["temperatures"] == {}
    assert s["service"]["storage"]["/rec"] == {"total": 1024.0, "used": 512.0, "free": 512.0,
                                               "mount_type": ""}
    assert s["service"]["storage"]["/gone"] == {}
    assert "gpu_usages" not in s  # no GpuLoadSensor for a GPU camfleet does not report


def _event(**kw: object) -> Event:
    base: dict[str, object] = {
        "id": "ev1", "camera": "door", "label": "person", "start": 1000.5, "end": 1010.25,
        "top_score": 0.81, "zones": ["porch"], "snapshot": "/data/snapshots/door/ev1.jpg",
        "data": {"box": [64, 36, 320, 216], "track_id": 3},
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def test_event_fields() -> None:
    e = shapes.event_shape(_event(), has_clip=True, frame=(640, 360))
    # media_source.py: event["camera"], event["id"], event.get("start_time"), event.get("end_time")
    assert (e["id"], e["camera"], e["start_time"], e["end_time"]) == ("ev1", "door", 1000.5, 1010.25)
    # media_source.py _build_event_response: event["label"],
    # event["data"].get("top_score") or event["top_score"]
    assert e["label"] == "person" and e["data"]["top_score"] == 0.81 and e["top_score"] == 0.81
    # Frigate's EventResponse fields
    assert e["has_clip"] is True and e["has_snapshot"] is True and e["retain_indefinitely"] is False
    assert e["zones"] == ["porch"] and e["sub_label"] is None and e["false_positive"] is False
    # Frigate 0.14+: data.box is [x, y, w, h] relative to the frame
    assert e["data"]["box"] == [0.1, 0.1, 0.4, 0.5]
    assert "snapshot" not in e and "/data/" not in repr(e)  # the file path stays private
    running = shapes.event_shape(_event(end=None, snapshot=None, data={}), has_clip=False, frame=None)
    assert running["end_time"] is None and running["has_snapshot"] is False and "box" not in running["data"]


def test_relative_box_refuses_odd_input() -> None:
    assert shapes.relative_box([1, 2, 3], (10, 10)) is None
    assert shapes.relative_box("1,2,3,4", (10, 10)) is None
    assert shapes.relative_box([1, 2, 3, "x"], (10, 10)) is None
    assert shapes.relative_box([1, 2, 3, 4], (0, 10)) is None
    assert shapes.relative_box([5, 5, 1, 1], (10, 10)) == [0.5, 0.5, 0.0, 0.0]  # inverted: empty


def test_event_filters() -> None:
    assert shapes.parse_list(None) is None and shapes.parse_list("all") is None
    assert shapes.parse_list(",") is None
    assert shapes.parse_list("a, b,") == frozenset({"a", "b"})
    ev = _event()
    f = shapes.EventFilter
    assert f(cameras=frozenset({"door", "yard"})).matches(ev)
    assert not f(cameras=frozenset({"yard"})).matches(ev)
    assert f(labels=frozenset({"person"})).matches(ev) and not f(labels=frozenset({"car"})).matches(ev)
    assert f(zones=frozenset({"porch", "x"})).matches(ev) and not f(zones=frozenset({"x"})).matches(ev)
    assert f(zones=frozenset({"None"})).matches(_event(zones=[]))
    # camfleet events have no sub label: only "None" matches
    assert f(sub_labels=frozenset({"None"})).matches(ev) and not f(sub_labels=frozenset({"bob"})).matches(ev)
    assert f(has_snapshot=True).matches(ev) and not f(has_snapshot=False).matches(ev)
    assert f(in_progress=False).matches(ev) and f(in_progress=True).matches(_event(end=None))
    assert not f(favorites=True).matches(ev) and f(favorites=True).matches(_event(retained=True))
    assert f().single(frozenset({"a"})) == "a" and f().single(frozenset({"a", "b"})) is None


def test_sessions_issue_verify_and_end(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        viewer = store.create_token("ha", "viewer")
        sessions = Sessions(tmp_path, store)
        assert sessions.login("cft_wrong") is None and sessions.login("") is None
        got = sessions.login(viewer)
        assert got is not None
        session, principal = got
        assert principal.role == "viewer" and principal.name == "ha"
        # api.py _get_token: decodes the JWT without verifying it and needs "exp"
        claims = jwt.decode(session.token, options={"verify_signature": False})
        assert claims["exp"] == session.expires and claims["exp"] > time.time() + 3600
        assert viewer not in session.token  # the API token never travels inside the JWT
        assert looks_like_jwt(session.token) and not looks_like_jwt(viewer)
        assert sessions.principal(session.token) == principal
        key_file = tmp_path / "frigate-compat.key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        # the key survives a restart: a new Sessions reads it back
        assert Sessions(tmp_path, store).principal(session.token) == principal
        # forged (another key), expired, tampered: refused
        forged = jwt.encode({**claims}, b"k" * 32, algorithm="HS256")
        assert sessions.principal(forged) is None
        assert sessions.principal(session.token, now=session.expires + LEEWAY_S - 1) == principal
        assert sessions.principal(session.token, now=session.expires + LEEWAY_S + 1) is None
        expired = jwt.encode({**claims, "exp": int(time.time()) - LEEWAY_S - 5}, sessions._load_key(),
                             algorithm="HS256")
        assert sessions.principal(expired) is None
        head, body, sig = session.token.split(".")
        assert sessions.principal(f"{head}.{body}.{sig[:-2]}AA") is None
        unsigned = f"{head}.{body}."  # alg "none"-style: no signature
        assert sessions.principal(unsigned) is None
        # revoking the token ends its sessions at once
        store.revoke_token(next(r.id for r in store.list_tokens() if r.name == "ha"))
        assert sessions.principal(session.token) is None
        # a torn key file is replaced (sessions signed with it end)
        key_file.write_bytes(b"short")
        fresh = Sessions(tmp_path, store)
        admin = store.create_token("admin", "admin")
        again = fresh.login(admin)
        assert again is not None and len(key_file.read_bytes()) == 32
    finally:
        store.close()
