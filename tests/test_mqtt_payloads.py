"""MQTT as Frigate speaks it, the pure parts: payloads, counts, motion, commands, stats, settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from camfleet.config import load_config_text
from camfleet.config.mqtt import MqttSettings
from camfleet.integrations.mqtt.book import EventBook, MotionBook
from camfleet.integrations.mqtt.commands import (
    Command,
    CommandError,
    camera_states,
    changed_config,
    parse_command,
    tracked_labels,
)
from camfleet.integrations.mqtt.payloads import NEUTRAL_FIELDS, frigate_object
from camfleet.integrations.mqtt.stats import frigate_stats
from camfleet.runtime.control import CameraStatus, NodeStatus, ProcessStatus
from camfleet.vocabulary import Event, EventMessage, MotionSpan

pytestmark = pytest.mark.unit

FRIGATE_FIELDS = {"id", "camera", "frame_time", "label", "sub_label", "top_score", "score", "false_positive",
                  "start_time", "end_time", "box", "area", "ratio", "region", "current_zones",
                  "entered_zones",
                  "has_snapshot", "has_clip", "active", "stationary", "motionless_count", "position_changes",
                  "attributes", "snapshot"}


def _event(end: float | None = None, zones: list[str] | None = None, snapshot: bool = True,
           best_seq: int = 7, score: float = 0.8, ev_id: str = "e1", camera: str = "door") -> Event:
    return Event(id=ev_id, camera=camera, label="person", start=100.0, end=end, top_score=score,
                 zones=zones or [], snapshot="/x/snapshots/door/e1.jpg" if snapshot else None,
                 data={"box": [10.4, 20.0, 50.0, 100.0], "last_seen": 103.5, "best_seq": best_seq,
                       "best_time": 101.25, "track_id": 3})


def _publications(pubs: list[Any]) -> dict[str, str]:
    return {p.topic: p.payload for p in pubs}


def test_frigate_object_maps_what_camfleet_knows_and_gives_neutral_values_to_the_rest() -> None:
    obj = frigate_object(_event(zones=["porch"]), has_clip=True)
    assert set(obj) >= FRIGATE_FIELDS
    assert obj["box"] == [10, 20, 50, 100] and obj["region"] == obj["box"]
    assert obj["area"] == 40 * 80 and obj["ratio"] == 0.5
    assert obj["score"] == obj["top_score"] == 0.8 and obj["false_positive"] is False
    assert obj["frame_time"] == 103.5 and obj["start_time"] == 100.0 and obj["end_time"] is None
    assert obj["active"] is True and obj["current_zones"] == ["porch"] == obj["entered_zones"]
    assert obj["has_snapshot"] is True and obj["has_clip"] is True
    assert obj["snapshot"]["frame_time"] == 101.25 and obj["snapshot"]["box"] == obj["box"]
    for key, value in NEUTRAL_FIELDS.items():
        assert obj[key] == value
    ended = frigate_object(_event(end=110.0, zones=["porch"], snapshot=False))
    assert ended["active"] is False and ended["current_zones"] == [] and ended["entered_zones"] == ["porch"]
    assert ended["frame_time"] == 110.0 and ended["snapshot"] is None and ended["has_snapshot"] is False
    json.dumps(obj, allow_nan=False)  # JSON-ready


def test_a_box_that_is_missing_or_malformed_gives_zeros() -> None:
    ev = _event()
    ev.data = {"box": ["a", 1, 2, 3]}
    obj = frigate_object(ev)
    assert obj["box"] == [0, 0, 0, 0] and obj["area"] == 0 and obj["ratio"] == 0.0
    assert obj["frame_time"] == 100.0


def test_events_new_update_end_with_before_and_counts() -> None:
    book = EventBook()
    pubs = book.event(EventMessage("start", _event(zones=["porch"])))
    assert pubs[0].topic == "events" and not pubs[0].retain
    first = json.loads(pubs[0].payload)
    assert first["type"] == "new" and first["before"]["false_positive"] is True
    assert first["after"]["false_positive"] is False
    counts = _publications(pubs[1:])
    assert counts == {"door/person": "1", "door/person/active": "1", "door/all": "1", "door/all/active": "1",
                      "porch/person": "1", "porch/person/active": "1", "porch/all": "1",
                      "porch/all/active": "1"}
    # an update: before is what was published last; counts unchanged are not sent again
    pubs = book.event(EventMessage("update", _event(zones=["porch"], score=0.9)))
    second = json.loads(pubs[0].payload)
    assert second["type"] == "update" and second["before"] == first["after"] and len(pubs) == 1
    assert second["after"]["top_score"] == 0.9
    # a second person on the camera
    pubs = book.event(EventMessage("start", _event(ev_id="e2")))
    assert _publications(pubs[1:]) == {"door/person": "2", "door/person/active": "2", "door/all": "2",
                                       "door/all/active": "2"}
    pubs = book.event(EventMessage("end", _event(end=110.0, zones=["porch"])))
    end = json.loads(pubs[0].payload)
    assert end["type"] == "end" and end["before"] == second["after"] and end["after"]["end_time"] == 110.0
    assert _publications(pubs[1:]) == {"door/person": "1", "door/person/active": "1", "door/all": "1",
                                       "door/all/active": "1", "porch/person": "0",
                                       "porch/person/active": "0",
                                       "porch/all": "0", "porch/all/active": "0"}
    assert "e1" not in book.previous and "e1" not in book.active


def test_a_batch_applied_to_a_copy_repeats_its_before_when_retried() -> None:
    book = EventBook()
    book.event(EventMessage("start", _event()))
    attempt = book.copy()
    one = json.loads(attempt.event(EventMessage("update", _event(score=0.9)))[0].payload)
    again = json.loads(book.copy().event(EventMessage("update", _event(score=0.9)))[0].payload)
    assert one == again and one["before"]["top_score"] == 0.8


def test_an_end_whose_start_was_never_published_has_before_equal_after() -> None:
    payload = json.loads(EventBook().event(EventMessage("end", _event(end=105.0)))[0].payload)
    assert payload["type"] == "end" and payload["before"] == payload["after"]


def test_current_counts_on_connecting() -> None:
    book = EventBook()
    book.event(EventMessage("start", _event(zones=["porch"])))
    pubs = _publications(book.current({"door": {"person", "car"}, "yard": set()}))
    assert pubs == {"door/person": "1", "door/person/active": "1", "door/car": "0", "door/car/active": "0",
                    "door/all": "1", "door/all/active": "1", "yard/all": "0", "yard/all/active": "0"}
    config = load_config_text("""
pipelines: {p: [motion: {}]}
cameras:
  door: {pipeline: p, sources: [{url: 'synthetic://door', roles: [detect]}],
         zones: {porch: {points: [[0, 0], [1, 0], [1, 1]], labels: [cat]},
                 lawn: {points: [[0, 0], [1, 0], [1, 1]]}}}
""")
    assert tracked_labels(config) == {"door": set(), "porch": {"cat"}, "lawn": set()}


def test_names_that_cannot_be_a_topic_level_get_no_count_topic() -> None:
    pubs = EventBook().event(EventMessage("start", _event(zones=["a+b", "c/d", "porch"])))
    topics = {p.topic for p in pubs}
    assert "porch/person" in topics and not any(t.startswith(("a+b", "c/d")) for t in topics)
    assert json.loads(pubs[0].payload)["after"]["entered_zones"] == ["a+b", "c/d", "porch"]


def test_snapshots_go_out_when_the_best_sighting_changes() -> None:
    book = EventBook()
    assert book.snapshot_due(EventMessage("start", _event()))
    assert not book.snapshot_due(EventMessage("update", _event()))
    assert book.snapshot_due(EventMessage("update", _event(best_seq=9, score=0.95)))
    assert not book.snapshot_due(EventMessage("update", _event(snapshot=False)))


def test_motion_on_at_once_and_off_after_the_delay() -> None:
    book = MotionBook(off_delay=30)
    assert [(p.topic, p.payload) for p in book.span(MotionSpan("door", "motion", 10, 10, open=True), 10)] == [
        ("door/motion", "ON")]
    assert book.span(MotionSpan("door", "motion", 10, 15, open=True), 15) == []  # extended: no repeat
    assert book.span(MotionSpan("door", "motion", 10, 20), 22) == []  # closed: OFF at 50
    assert book.next_due() == 50 and book.due(49.9) == []
    # motion again before the delay ran out: stays ON, the OFF is cancelled
    assert book.span(MotionSpan("door", "motion", 40, 40, open=True), 40) == []
    assert book.next_due() is None
    assert book.span(MotionSpan("door", "motion", 40, 45), 46) == []
    assert [(p.topic, p.payload) for p in book.due(75)] == [("door/motion", "OFF")]
    assert book.state("door") == "OFF"
    # a closed span of long ago (replayed) publishes nothing
    assert book.span(MotionSpan("yard", "motion", 1, 2), 500) == []
    assert book.span(MotionSpan("yard", "event", 1, 2, open=True), 500) == []


# ----------------------------------------------------------------------------- commands


def _config(extra: str = "", detect: str = "") -> Any:
    return load_config_text(f"""
pipelines: {{p: [motion: {{threshold: 20}}, snapshot: {{}}]}}
cameras:
  door: {{pipeline: p, sources: [{{url: 'synthetic://door', roles: [detect]}}],
         detect: {{width: 320, height: 240{detect}}}{extra}}}
""")


def test_parse_command() -> None:
    assert parse_command("frigate/door/detect/set", b"OFF", "frigate") == Command("door", "detect", False)
    assert parse_command("frigate/door/recordings/set", b" on\n", "frigate") == Command(
        "door", "recordings", True)
    assert parse_command("my/pre/door/motion_threshold/set", b"40", "my/pre") == Command(
        "door", "motion_threshold", 40)
    for topic, payload, why in [
        ("frigate/door/detect/set", b"MAYBE", "expected ON or OFF"),
        ("frigate/door/motion_threshold/set", b"4.5", "whole number"),
        ("frigate/door/motion_threshold/set", b"999", "outside 1..255"),
        ("frigate/door/motion_contour_area/set", b"-1", "outside"),
        ("frigate/door/ptz/set", b"ON", "does not take the command 'ptz'"),
        ("frigate/door/detect/set", b"\xff\xfe", "not text"),
        ("other/door/detect/set", b"ON", "not a camera command topic"),
        ("frigate/detect/set", b"ON", "not a camera command topic"),
    ]:
        with pytest.raises(CommandError, match=why):
            parse_command(topic, payload, "frigate")
    with pytest.raises(CommandError) as err:
        parse_command("frigate/door/detect/set", b"x", "frigate")
    assert "frigate/door/detect/set" in str(err.value)  # the log line names the topic


def test_commands_change_the_camera_and_keep_the_rest() -> None:
    config = _config()
    off = changed_config(config, Command("door", "detect", False))
    assert off.cameras["door"].detect.enabled is False and off.cameras["door"].detect.width == 320
    assert off.data_path == config.data_path  # private attributes kept
    assert changed_config(config, Command("door", "detect", True)) is config  # nothing to change
    rec = changed_config(config, Command("door", "recordings", True))
    assert rec.cameras["door"].record.enabled is True
    snaps = changed_config(config, Command("door", "snapshots", False))
    assert snaps.cameras["door"].snapshots.enabled is False
    assert changed_config(config, Command("door", "enabled", False)).cameras["door"].enabled is False
    thr = changed_config(config, Command("door", "motion_threshold", 40))
    assert thr.cameras["door"].motion.threshold == 40
    with pytest.raises(CommandError, match="not allowed while detection is on"):
        changed_config(config, Command("door", "motion", False))
    motion_off = changed_config(off, Command("door", "motion", False))
    assert motion_off.cameras["door"].motion.enabled is False
    back = changed_config(motion_off, Command("door", "detect", True))
    assert back.cameras["door"].detect.enabled and back.cameras["door"].motion.enabled
    with pytest.raises(CommandError, match="no camera 'yard'"):
        changed_config(config, Command("yard", "detect", False))


def test_camera_states() -> None:
    states = camera_states(_config(), "door")
    assert states == {"enabled": "ON", "detect": "ON", "recordings": "OFF", "snapshots": "ON", "motion": "ON",
                      "motion_threshold": "20",
                      "motion_contour_area": str(round(0.002 * 100 * 100 * 320 / 240))}
    states = camera_states(_config(", motion: {threshold: 50, contour_area: 15}", ", enabled: false"), "door")
    assert states["motion_threshold"] == "50" and states["motion_contour_area"] == "15"
    assert states["detect"] == "OFF"


def test_camera_switches_reach_the_pipeline() -> None:
    from camfleet.pipeline.build import camera_env, element_specs
    from camfleet.runtime.reconcile import plan

    config = _config()
    new = changed_config(changed_config(config, Command("door", "detect", False)),
                         Command("door", "motion_contour_area", 12))
    assert camera_env(new, "door").off == frozenset({"detect"})
    assert element_specs(new, "door")[0] == ("motion", {"threshold": 20, "contour_area": 12})
    p = plan(config, new)  # in place: no process restarts
    assert p.cameras["door"].update and not p.cameras["door"].restart and not p.cameras["door"].stop


# ----------------------------------------------------------------------------- stats and settings


def test_stats_in_frigate_shape() -> None:
    config = _config()
    status = NodeStatus(node="n", pid=1, started_at=1000.0, at=1060.0, cameras={"door": CameraStatus(
        name="door", state="healthy", decode_fps=10.0, processed_fps=4.9, skipped_fps=0.1, detector_rps=2.5,
        processes={"door/ingest": ProcessStatus("door/ingest", "ingest", "healthy", pid=11,
                                                metrics={"fps": 5.0}),
                   "door/pipeline": ProcessStatus("door/pipeline", "pipeline", "healthy", pid=12)})},
        detectors={"cpu": ProcessStatus("cpu", "detector", "healthy", pid=13,
                                        metrics={"inference_ms": 12.345})})
    stats = frigate_stats(status, config, now=1060.0, storage={"/rec": {}})
    assert stats["cameras"]["door"] == {"camera_fps": 5.0, "process_fps": 4.9, "skipped_fps": 0.1,
                                        "detection_fps": 2.5, "detection_enabled": True, "pid": 12,
                                        "capture_pid": 11, "ffmpeg_pid": 11}
    assert stats["detectors"] == {"cpu": {"inference_speed": 12.35, "detection_start": 0.0, "pid": 13}}
    assert stats["camera_fps"] == 5.0 and stats["detection_fps"] == 2.5
    assert stats["service"]["uptime"] == 60 and stats["service"]["storage"] == {"/rec": {}}
    assert stats["service"]["version"] and stats["service"]["last_updated"] == 1060


def test_settings_validate_and_keep_the_password_out_of_sight() -> None:
    s = MqttSettings(host="broker", user="u", password="hunter2")
    assert s.port == 1883 and s.topic_prefix == "frigate" and s.qos == 1 and s.stats_interval == 60
    assert "hunter2" not in repr(s)
    for bad, why in [({"password": "x"}, "needs 'user'"), ({"topic_prefix": "a/#"}, "pattern"),
                     ({"topic_prefix": "a/"}, "pattern"), ({"stats_interval": 5}, "greater than or equal"),
                     ({"qos": 3}, "qos"), ({"tls": {"cert": "c.pem"}}, "both 'cert' and 'key'")]:
        with pytest.raises(ValidationError, match=why) as err:
            MqttSettings.model_validate({"host": "broker", **bad})
        assert "hunter2" not in str(err.value)
    config = load_config_text("""
mqtt: {host: broker, user: u, password: hunter2}
pipelines: {p: [motion: {}]}
cameras: {door: {pipeline: p, sources: [{url: 'synthetic://door', roles: [detect]}]}}
""")
    assert config.mqtt is not None and config.mqtt.password == "hunter2"
    assert config.model_dump_public()["mqtt"]["password"] == "***"
    with pytest.raises(Exception) as err:
        load_config_text("mqtt: {host: broker, user: u, password: hunter2, port: 0}\n")
    assert "hunter2" not in str(err.value)


def test_camfleet_status_says_why_the_broker_is_not_connected() -> None:
    from camfleet.cli.status import _sink_lines

    row = {"lag": 0, "attempts": 0, "delivered": 3, "failed": 1, "connected": 0,
           "broker_error": "the broker refused the connection: Not authorized"}
    line = _sink_lines({"mqtt": row})[-1]
    assert line.startswith("mqtt") and "not connected: the broker refused the connection" in line
