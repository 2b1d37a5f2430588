"""``camfleet import frigate``: one configuration per Frigate release family, converted and checked.

The Frigate files below are written from Frigate's reference documentation of
each release (0.12/0.13 without ``version:``, 0.14, 0.15, 0.16, 0.17, 0.18);
every conversion must validate with the element catalog (what ``camfleet
config check`` does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from camfleet.cli.main import app
from camfleet.importers import ImportResult
from camfleet.importers.frigate import convert, frigate_version
from camfleet.pipeline.validate import load_config, load_config_text

pytestmark = pytest.mark.unit

FRIGATE_012 = """
mqtt:
  host: 10.0.0.2
  user: frigate
  password: "{FRIGATE_MQTT_PASSWORD}"
  topic_prefix: frigate
detectors:
  coral: {type: edgetpu, device: usb}
go2rtc:
  streams:
    front: rtsp://admin:{FRIGATE_RTSP_PASSWORD}@10.0.0.10:554/main
    front_sub:
      - "ffmpeg:rtsp://admin:{FRIGATE_RTSP_PASSWORD}@10.0.0.10:554/sub#video=copy"
birdseye: {enabled: true, mode: objects}
record:
  enabled: true
  retain: {days: 3, mode: motion}
  events:
    pre_capture: 5
    post_capture: 10
    retain:
      default: 14
      mode: active_objects
      objects: {person: 30}
objects:
  track: [person, car, dog]
  filters:
    person: {min_area: 5000, min_score: 0.55, threshold: 0.75}
    car: {min_area: 10000, max_area: 100000}
cameras:
  front:
    ffmpeg:
      inputs:
        - path: rtsp://127.0.0.1:8554/front
          input_args: preset-rtsp-restream
          roles: [record, rtmp]
        - path: rtsp://127.0.0.1:8554/front_sub
          input_args: preset-rtsp-restream
          roles: [detect]
    detect: {width: 640, height: 480, fps: 5}
    zones:
      driveway:
        coordinates: 0,480,640,480,640,240,0,240
        objects: [car]
        inertia: 3
    motion:
      mask: 0,0,640,0,640,48,0,48
    objects:
      mask:
        - 0,0,64,0,64,64,0,64
  garage:
    ffmpeg:
      hwaccel_args: preset-vaapi
      inputs:
        - path: rtsp://viewer:{FRIGATE_GARAGE_PASSWORD}@10.0.0.11:554/stream1
          input_args: preset-rtsp-udp
          roles: [detect, record, audio]
    zones:
      door:
        coordinates: ["640,0", "1280,0", "1280,720", "640,720"]
    snapshots: {enabled: true}
"""

FRIGATE_014 = """
version: 0.14
mqtt: {enabled: false}
record:
  enabled: true
  retain: {days: 7, mode: all}
  events:
    retain: {default: 30, mode: motion}
objects:
  track: [person]
  filters:
    person: {min_area: 0.01, min_score: 0.6}
cameras:
  yard:
    ffmpeg:
      inputs:
        - path: rtsp://10.0.0.20:554/live
          roles: [detect, record]
    detect: {width: 1280, height: 720}
    zones:
      lawn:
        coordinates: 0.1,0.5,0.9,0.5,0.9,1,0.1,1
        objects: person
        loitering_time: 10
    motion:
      mask: [0,0,1,0,1,0.05,0,0.05]
"""

FRIGATE_015 = """
version: 0.15-1
record:
  enabled: true
  retain: {days: 2, mode: all}
  alerts:
    pre_capture: 3
    post_capture: 8
    retain: {days: 30, mode: motion}
  detections:
    pre_capture: 6
    retain: {days: 14, mode: motion}
cameras:
  shop:
    ffmpeg:
      inputs:
        - path: rtsp://{FRIGATE_SHOP_USER}:{FRIGATE_SHOP_PASSWORD}@10.0.0.30/main
          roles: [record]
        - path: rtsp://{FRIGATE_SHOP_USER}:{FRIGATE_SHOP_PASSWORD}@10.0.0.30/sub
          roles: [detect]
    detect: {width: 640, height: 360, fps: 5}
    motion:
      threshold: 40
      contour_area: 15
      mask:
        - 0,0,0.2,0,0.2,0.2,0,0.2
        - 0.8,0,1,0,1,0.2,0.8,0.2
"""

FRIGATE_016 = """
version: 0.16-0
record: {enabled: false}
cameras:
  porch:
    ffmpeg:
      inputs: [{path: "rtsp://10.0.0.40/stream", roles: [detect, record]}]
  drive:
    ffmpeg:
      inputs: [{path: "rtsp://10.0.0.41/stream", roles: [detect]}]
    detect: {enabled: true, width: 1280, height: 720}
"""

FRIGATE_017 = """
version: 0.17-0
go2rtc:
  streams:
    lobby: ["rtsp://admin:hunter2@10.0.0.50:554/h264Preview_01_main"]
    lobby_sub: ["echo:/config/get_stream.sh"]
record:
  enabled: true
  continuous: {days: 3}
  motion: {days: 7}
  alerts: {retain: {days: 30, mode: motion}}
  detections: {retain: {days: 10, mode: motion}}
cameras:
  lobby:
    ffmpeg:
      inputs:
        - path: rtsp://127.0.0.1:8554/lobby
          roles: [detect, record]
    detect: {enabled: true, width: 1920, height: 1080}
    objects:
      track: [person, bicycle]
      filters: {bicycle: {min_score: 0.7}}
  side:
    ffmpeg:
      inputs: [{path: "rtsp://127.0.0.1:8554/lobby_sub", roles: [detect]}]
    detect: {enabled: true}
"""

FRIGATE_018 = """
version: 0.18-0
cameras:
  gate:
    ffmpeg:
      inputs: [{path: "rtsp://10.0.0.60/main", roles: [detect, record]}]
    detect: {enabled: true, width: 1280, height: 720}
    motion:
      mask:
        timestamp:
          friendly_name: Timestamp
          enabled: true
          coordinates: 0,0,1,0,1,0.1,0,0.1
        tree:
          enabled: false
          coordinates: 0.5,0.5,0.6,0.5,0.6,0.6
    objects:
      mask:
        street: {coordinates: ["0,0.9", "1,0.9", "1,1", "0,1"]}
"""


def _convert(text: str, tmp_path: Path) -> tuple[ImportResult, Any]:
    """The conversion of ``text`` and the validated camfleet config of its YAML (element catalog)."""
    result = convert(yaml.safe_load(text))
    out = yaml.safe_dump(result.config, sort_keys=False)
    config = load_config_text(out, base_dir=tmp_path, env={}, require_env=False)
    return result, config


def _notes(result: ImportResult) -> list[str]:
    return [str(n) for n in result.notes]


def _has(result: ImportResult, prefix: str) -> bool:
    return any(s.startswith(prefix) for s in _notes(result))


def test_version_detection() -> None:
    assert frigate_version({}) == (0, 13)
    assert frigate_version({"version": 0.14}) == (0, 14)
    assert frigate_version({"version": "0.15-1"}) == (0, 15)
    assert frigate_version({"version": "0.17-0"}) == (0, 17)


def test_frigate_012_pixels_go2rtc_vars_rtmp_filters(tmp_path: Path) -> None:
    result, cfg = _convert(FRIGATE_012, tmp_path)
    front = cfg.cameras["front"]
    # go2rtc restreams resolved, ffmpeg: prefix and #options gone, {FRIGATE_X} -> ${FRIGATE_X}
    raw = result.config["cameras"]["front"]["sources"]
    assert raw[0] == {"url": "rtsp://admin:${FRIGATE_RTSP_PASSWORD}@10.0.0.10:554/main", "roles": ["record"]}
    assert raw[1]["url"] == "rtsp://admin:${FRIGATE_RTSP_PASSWORD}@10.0.0.10:554/sub"
    assert raw[1]["roles"] == ["detect"]
    assert _has(result, "not mapped: cameras.front.ffmpeg.inputs[0].roles: 'rtmp'")
    # pixels against detect 640x480
    assert front.zones["driveway"].points == [[0, 1], [1, 1], [1, 0.5], [0, 0.5]]
    assert front.zones["driveway"].labels == ["car"]
    assert _has(result, "not mapped: cameras.front.zones.driveway.inertia")
    assert front.masks == [[[0, 0], [1, 0], [1, 0.1], [0, 0.1]],
                           [[0, 0], [0.1, 0], [0.1, 0.133333], [0, 0.133333]]]
    # no detect size before 0.14: Frigate's 1280x720
    garage = cfg.cameras["garage"]
    assert (garage.detect.width, garage.detect.height) == (1280, 720)
    assert garage.zones["door"].points == [[0.5, 0], [1, 0], [1, 1], [0.5, 1]]
    src = garage.sources[0]
    assert src.url == "rtsp://viewer:${FRIGATE_GARAGE_PASSWORD}@10.0.0.11:554/stream1"
    assert (src.roles, src.transport, src.hwaccel) == (["detect", "record"], "udp", "vaapi")
    assert _has(result, "not mapped: cameras.garage.ffmpeg.inputs[0].roles: 'audio'")
    assert _has(result, "not mapped: cameras.garage.snapshots")
    # retention (<= 0.13): retain motion 3 days, events 14
    assert front.record.enabled and front.record.mode == "motion"
    assert front.record.retain_days.model_dump() == {"continuous": 0, "motion": 3, "events": 14}
    assert (front.record.pre_capture, front.record.post_capture) == (5, 10)
    assert _has(result, "not mapped: cameras.front.record.events.retain.objects")
    # objects: labels, scores, min_area pixels -> fraction of 640x480 (smallest of person/car)
    detect = cfg.pipelines[front.pipeline][1].params
    assert detect["labels"] == ["person", "car", "dog"]
    assert detect["min_score"] == {"default": 0.5, "person": 0.55}
    assert detect["min_area"] == pytest.approx(5000 / (640 * 480))
    assert _has(result, "not mapped: cameras.front.objects.filters.person.threshold")
    assert _has(result, "not mapped: cameras.front.objects.filters.car.max_area")
    # garage's detect frame is 1280x720: another min_area, another pipeline
    assert garage.pipeline != front.pipeline
    assert cfg.pipelines[garage.pipeline][1].params["min_area"] == pytest.approx(5000 / (1280 * 720))
    # detection on by default before 0.16
    assert [e.name for e in cfg.pipelines[front.pipeline]][:2] == [
        "motion", "detect"]
    # mqtt: the same broker; the password stays a variable
    assert cfg.mqtt is not None and cfg.mqtt.host == "10.0.0.2" and cfg.mqtt.user == "frigate"
    assert cfg.mqtt.topic_prefix == "frigate" and cfg.mqtt.qos == 1
    assert result.config["mqtt"]["password"] == "${FRIGATE_MQTT_PASSWORD}"
    assert _has(result, "converted: mqtt.qos")
    assert _has(result, "not mapped: detectors:") and _has(result, "not mapped: birdseye:")


def test_no_secret_in_notes() -> None:
    text017 = FRIGATE_017.replace("10.0.0.50:554/h264", "10.0.0.50:554/x?password=pw&h")
    result = convert(yaml.safe_load(text017))
    text = "\n".join(_notes(result))
    assert "hunter2" not in text and "pw&" not in text
    assert "***" in text
    m = convert({"mqtt": {"host": "h", "user": "u", "password": "s3cret"}, "cameras": {}})
    assert "s3cret" not in "\n".join(_notes(m))
    assert m.config["mqtt"]["password"] == "s3cret"  # the broker needs it: copied, and said so
    assert _has(m, "converted: mqtt.password")


def test_mqtt_tls_and_odd_values() -> None:
    m = convert({"mqtt": {"host": "h", "port": 8883, "qos": 0, "stats_interval": 5, "tls_ca_certs": "/ca.pem",
                          "tls_client_cert": "/c.pem", "tls_insecure": True, "frobnicate": 1},
                 "cameras": {}})
    assert m.config["mqtt"] == {"host": "h", "port": 8883, "qos": 0,
                                "tls": {"ca": "/ca.pem", "insecure": True}}
    for key in ("mqtt.stats_interval", "mqtt.tls_client_cert", "mqtt.frobnicate"):
        assert _has(m, f"not mapped: {key}")
    assert not _has(m, "converted: mqtt.qos")
    assert "mqtt" not in convert({"mqtt": {"enabled": False}, "cameras": {}}).config


def test_frigate_014_relative_kept_retention(tmp_path: Path) -> None:
    result, cfg = _convert(FRIGATE_014, tmp_path)
    yard = cfg.cameras["yard"]
    assert yard.zones["lawn"].points == [[0.1, 0.5], [0.9, 0.5], [0.9, 1], [0.1, 1]]
    assert yard.zones["lawn"].labels == ["person"]
    assert _has(result, "not mapped: cameras.yard.zones.lawn.loitering_time")
    assert yard.masks == [[[0, 0], [1, 0], [1, 0.05], [0, 0.05]]]
    assert not _has(result, "converted: cameras.yard.zones")  # relative: kept as is
    assert yard.record.mode == "continuous"
    # events.retain.mode 'motion' still is event footage in camfleet
    assert yard.record.retain_days.model_dump() == {"continuous": 7, "motion": 0, "events": 30}
    detect = cfg.pipelines[yard.pipeline][1].params
    assert detect["min_area"] == 0.01 and detect["min_score"] == {"default": 0.5, "person": 0.6}
    assert _has(result, "not mapped: mqtt: disabled in Frigate, without a host")


def test_frigate_015_alerts_detections_vars(tmp_path: Path) -> None:
    result, cfg = _convert(FRIGATE_015, tmp_path)
    shop = cfg.cameras["shop"]
    assert shop.record.retain_days.model_dump() == {"continuous": 2, "motion": 0, "events": 30}
    assert (shop.record.pre_capture, shop.record.post_capture) == (6, 8)
    assert shop.sources[0].url == "rtsp://${FRIGATE_SHOP_USER}:${FRIGATE_SHOP_PASSWORD}@10.0.0.30/main"
    assert len(shop.masks) == 2 and shop.masks[1][0] == [0.8, 0]
    motion = cfg.pipelines[shop.pipeline][0]
    assert motion.name == "motion" and motion.params == {"threshold": 40}
    assert _has(result, "not mapped: cameras.shop.motion.contour_area")
    # the variables are substituted by camfleet's loader
    env = {"FRIGATE_SHOP_USER": "u", "FRIGATE_SHOP_PASSWORD": "p"}
    loaded = load_config_text(yaml.safe_dump(result.config), base_dir=tmp_path, env=env)
    assert loaded.cameras["shop"].sources[1].url == "rtsp://u:p@10.0.0.30/sub"


def test_frigate_016_detect_off_by_default(tmp_path: Path) -> None:
    result, cfg = _convert(FRIGATE_016, tmp_path)
    porch, drive = cfg.cameras["porch"], cfg.cameras["drive"]
    assert [e.name for e in cfg.pipelines[porch.pipeline]] == ["motion"]
    assert "detect" in [e.name for e in cfg.pipelines[drive.pipeline]]
    assert _has(result, "converted: cameras.porch.detect.enabled")
    assert not porch.record.enabled
    assert porch.detect.width is None  # 0.14+: the stream's own size


def test_frigate_017_retention_go2rtc(tmp_path: Path) -> None:
    result, cfg = _convert(FRIGATE_017, tmp_path)
    lobby = cfg.cameras["lobby"]
    assert lobby.sources[0].url == "rtsp://admin:hunter2@10.0.0.50:554/h264Preview_01_main"
    assert lobby.record.mode == "continuous"
    assert lobby.record.retain_days.model_dump() == {"continuous": 3, "motion": 7, "events": 30}
    detect = cfg.pipelines[lobby.pipeline][1].params
    assert detect["labels"] == ["person", "bicycle"]
    assert detect["min_score"] == {"default": 0.5, "bicycle": 0.7}
    # a go2rtc source camfleet cannot open: the restream URL is kept, with a note
    assert cfg.cameras["side"].sources[0].url == "rtsp://127.0.0.1:8554/lobby_sub"
    assert _has(result, "not mapped: cameras.side.ffmpeg.inputs[0]: go2rtc restream 'lobby_sub'")


def test_frigate_018_named_masks(tmp_path: Path) -> None:
    result, cfg = _convert(FRIGATE_018, tmp_path)
    gate = cfg.cameras["gate"]
    assert gate.masks == [[[0, 0], [1, 0], [1, 0.1], [0, 0.1]], [[0, 0.9], [1, 0.9], [1, 1], [0, 1]]]
    assert _has(result, "not mapped: cameras.gate.motion.mask.tree: a disabled mask")
    assert _has(result, "converted: cameras.gate.motion.mask: named masks")


def test_cli_end_to_end(tmp_path: Path) -> None:
    src = tmp_path / "config.yml"
    src.write_text(FRIGATE_012, encoding="utf-8")
    dst = tmp_path / "camfleet.yaml"
    runner = CliRunner()
    r = runner.invoke(app, ["import", "frigate", str(src), "-o", str(dst)])
    assert r.exit_code == 0, r.output
    assert "not mapped: cameras.front.ffmpeg.inputs[0].roles: 'rtmp'" in r.output
    assert f"{dst}: ok" in r.output
    assert load_config(dst, env={"FRIGATE_RTSP_PASSWORD": "x", "FRIGATE_GARAGE_PASSWORD": "y",
                                 "FRIGATE_MQTT_PASSWORD": "z"}).cameras
    r = runner.invoke(app, ["config", "check", str(dst), "--ignore-unset-env"])
    assert r.exit_code == 0, r.output
    # no overwrite without --force
    r = runner.invoke(app, ["import", "frigate", str(src), "-o", str(dst)])
    assert r.exit_code == 2


def test_cli_reports_invalid_result(tmp_path: Path) -> None:
    src = tmp_path / "config.yml"
    # an input camfleet cannot open (rtmp://) becomes a source that does not validate
    src.write_text("cameras:\n  c:\n    ffmpeg:\n      inputs: [{path: 'rtmp://h/live', roles: [detect]}]\n",
                   encoding="utf-8")
    dst = tmp_path / "out.yaml"
    r = CliRunner().invoke(app, ["import", "frigate", str(src), "-o", str(dst)])
    assert r.exit_code == 1
    assert f"{dst}:" in r.output and "cameras.c.sources[0].url" in r.output


@pytest.mark.parametrize("frigate", [
    {},
    {"cameras": None},
    {"cameras": {"a": None}},
    {"cameras": {"bad name!": {}}},
    {"cameras": {"a": {"ffmpeg": {"inputs": [{"path": "rtsp://h/s", "roles": "detect"}]},
                       "detect": {"width": "640", "height": 480.5, "fps": "x", "enabled": True},
                       "zones": {"z": {"coordinates": "1,2,3"}, "y": "nope", "x": {"coordinates": [1, "a"]}},
                       "motion": {"mask": {"m": 5}, "threshold": "high"},
                       "objects": {"track": "person", "filters": {"person": "x", "car": {"min_area": True}}},
                       "record": {"retain": 3, "events": None, "alerts": {"retain": {"days": "x"}}}}}},
    {"version": "garbage", "mqtt": "x", "go2rtc": {"streams": {"s": 5}}, "record": [], "objects": "x"},
])
def test_odd_input_never_raises(frigate: dict[str, Any]) -> None:
    result = convert(frigate)
    assert isinstance(result.config["cameras"], dict)


def test_roles_as_one_string(tmp_path: Path) -> None:
    text = "cameras:\n  c:\n    ffmpeg:\n      inputs: [{path: 'rtsp://h/s', roles: detect}]\n"
    _, cfg = _convert(text, tmp_path)
    assert cfg.cameras["c"].sources[0].roles == ["detect"]


def test_pipeline_names_unique(tmp_path: Path) -> None:
    inputs = "ffmpeg: {inputs: [{path: 'rtsp://h/s', roles: [detect]}]}"
    text = (f"cameras:\n  a:\n    {inputs}\n  default:\n    {inputs}\n    objects: {{track: [car]}}\n"
            f"  b:\n    {inputs}\n    objects: {{track: [dog]}}\n")
    _, cfg = _convert(text, tmp_path)
    assert [cfg.cameras[c].pipeline for c in ("a", "default", "b")] == ["default", "default-2", "b"]
    assert len(cfg.pipelines) == 3
