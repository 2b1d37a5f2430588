"""MQTT as Frigate speaks it, end to end: a real node on a synthetic camera, a real mosquitto, paho.

One node and one broker for the module (the node's start is the slow part); the tests run in
file order, each leaving the node as it found it. The last will and the password checks use
their own broker and a client of their own.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from camfleet.config import Config
from camfleet.config.mqtt import MqttSettings, MqttTls
from camfleet.integrations import Integrations
from camfleet.integrations.mqtt import MqttIntegration
from camfleet.integrations.mqtt.client import Broker
from camfleet.integrations.mqtt.commands import Command, changed_config
from camfleet.integrations.mqtt.payloads import Publication
from camfleet.integrations.mqtt.sink import MqttSink
from camfleet.runtime import Node
from camfleet.store import Store
from camfleet.vocabulary import Event, EventMessage
from tests.support.api_node import camera_yaml, node_config, shm_env
from tests.support.mosquitto import Listener, Mosquitto, Received
from tests.support.runtime_helpers import EventNotes
from tests.support.tls_ca import make_ca_and_server

pytestmark = [pytest.mark.process, pytest.mark.beside]

FIELDS = {"id", "camera", "frame_time", "label", "sub_label", "top_score", "score", "false_positive",
          "start_time", "end_time", "box", "area", "ratio", "region", "current_zones", "entered_zones",
          "has_snapshot", "has_clip", "active", "stationary", "motionless_count", "position_changes",
          "attributes", "snapshot"}


@dataclass
class Rig:
    broker: Mosquitto
    node: Node
    config: Config
    mqtt: MqttIntegration
    listener: Listener
    notes: EventNotes
    shm: Path


def _events(msgs: list[Received]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in msgs if m.topic == "frigate/events"]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("mqtt")
    broker = Mosquitto(tmp / "broker")
    broker.start()
    # the listener's session outlives a broker restart (persistent session, QoS 1): what the node
    # publishes while the listener reconnects is kept for it, as for any durable subscriber
    listener = Listener(broker.port, "frigate/#", client_id="rig-listener", persistent=True)
    mqtt = f"mqtt: {{host: 127.0.0.1, port: {broker.port}, off_delay: 1, confirm_timeout: 5}}"
    with shm_env("camfleet-mqtttest") as shm:
        config = node_config(tmp / "data", camera_yaml("cam1"), mqtt)
        store = Store.open(config.database_url)
        node = Node(config, store=store)
        integrations = Integrations.for_config(config)
        assert [i.name for i in integrations.items] == ["mqtt"]
        integrations.attach(node)
        node.start()
        try:
            integrations.start(node)
            item = integrations.items[0]
            assert isinstance(item, MqttIntegration)
            yield Rig(broker, node, config, item, listener, EventNotes(node), shm)
        finally:
            integrations.quiesce()
            node.stop()
            integrations.stop()
            store.close()
            listener.close()
            broker.stop()


@pytest.fixture(autouse=True)
def _module_shm(rig: Rig, shm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # processes the module's node (re)starts during a test find their rings where the node's are
    monkeypatch.setenv("CAMFLEET_SHM_DIR", str(rig.shm))


def test_availability_and_camera_states_are_retained(rig: Rig) -> None:
    want = {"frigate/available": "online", "frigate/cam1/enabled/state": "ON",
            "frigate/cam1/detect/state": "ON", "frigate/cam1/recordings/state": "OFF",
            "frigate/cam1/snapshots/state": "ON", "frigate/cam1/motion/state": "ON",
            "frigate/cam1/motion_threshold/state": "25"}
    # every state published once (so the broker holds it) before the late client subscribes: a
    # state first published after its subscription would reach it live, with no retain flag
    for topic, value in want.items():
        rig.listener.wait(lambda m, t=topic, v=value: m.topic == t and m.text == v, 15)
    rig.listener.wait(lambda m: m.topic == "frigate/cam1/motion_contour_area/state", 15)
    late = Listener(rig.broker.port, "frigate/#", client_id="late")  # sees only what is retained
    try:
        for topic, value in want.items():
            # from the broker's retained store (a state published again meanwhile comes live too)
            m = late.wait(lambda m, t=topic: m.topic == t and m.retain, 5)
            assert m.text == value, (topic, m)
        late.wait(lambda m: m.topic == "frigate/cam1/motion_contour_area/state" and m.retain, 5)
    finally:
        late.close()


def test_events_counts_snapshot_and_motion(rig: Rig) -> None:
    lis = rig.listener
    new = lis.wait(lambda m: m.topic == "frigate/events" and json.loads(m.payload)["type"] == "new", 60)
    assert not new.retain
    payload = json.loads(new.payload)
    after = payload["after"]
    assert set(after) >= FIELDS and set(payload["before"]) >= FIELDS
    assert after["camera"] == "cam1" and after["label"] == "person" and after["false_positive"] is False
    assert payload["before"]["false_positive"] is True and after["active"] is True
    x1, y1, x2, y2 = after["box"]
    assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240  # pixels of the detect frame
    assert after["area"] == (x2 - x1) * (y2 - y1) and after["start_time"] <= after["frame_time"]
    # the journal has the same event: the payload is the outbox's, not a live copy
    rig.notes.wait(lambda n: n["event"]["id"] == after["id"], 10)
    count = lis.wait(lambda m: m.topic == "frigate/cam1/person", 10)
    assert int(count.text) >= 1 and not count.retain
    lis.wait(lambda m: m.topic == "frigate/cam1/all", 10)
    lis.wait(lambda m: m.topic == "frigate/cam1/person/active", 10)
    lis.wait(lambda m: m.topic == "frigate/cam1/motion" and m.text == "ON", 10)
    snap = lis.wait(lambda m: m.topic == "frigate/cam1/person/snapshot", 20)
    assert snap.payload[:2] == b"\xff\xd8"  # a JPEG
    late = Listener(rig.broker.port, "frigate/cam1/person/snapshot", client_id="late-snap")
    try:
        assert late.wait(lambda m: True, 5).retain  # snapshots are retained
    finally:
        late.close()
    # a later message for the same object: its before is the after published last
    upd = lis.wait(lambda m: m.topic == "frigate/events"
                   and json.loads(m.payload)["after"]["id"] == after["id"]
                   and json.loads(m.payload)["type"] in ("update", "end"), 30)
    assert json.loads(upd.payload)["before"]["id"] == after["id"]
    # the node's status is sampled once a supervisor pass: read the sink's row once it is there
    deadline = time.monotonic() + 10
    while "mqtt" not in (sinks := rig.node.status().sinks) and time.monotonic() < deadline:
        time.sleep(0.1)  # the next pass is not an event one can wait on from here
    sink = sinks["mqtt"]
    assert sink["connected"] == 1 and sink["published"] >= 3 and sink["broker_error"] == ""


def test_stats_in_frigate_shape(rig: Rig) -> None:
    mark = rig.listener.mark()
    rig.mqtt.publish_stats()
    stats = json.loads(rig.listener.wait(lambda m: m.topic == "frigate/stats", 10, after=mark).payload)
    cam = stats["cameras"]["cam1"]
    assert {"camera_fps", "process_fps", "skipped_fps", "detection_fps", "pid", "capture_pid"} <= set(cam)
    assert cam["process_fps"] > 0 and isinstance(cam["pid"], int)
    assert stats["detectors"]
    assert all("inference_speed" in d and "pid" in d for d in stats["detectors"].values())
    assert {"uptime", "version", "latest_version", "storage"} <= set(stats["service"])


def _command(rig: Rig, name: str, payload: str) -> Received:
    """Send a command; the retained state it leads to (the payload once applied)."""
    mark = rig.listener.mark()
    rig.listener.client.publish(f"frigate/cam1/{name}/set", payload, qos=1)
    return rig.listener.wait(lambda m: m.topic == f"frigate/cam1/{name}/state" and m.text == payload, 15,
                             after=mark)


def test_commands_change_the_running_node(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    node, notes = rig.node, rig.notes
    pipeline_pid = node.processes()["cam1/pipeline"]
    # bad payloads are ignored, with a log line naming the topic
    with caplog.at_level(logging.WARNING, logger="camfleet.integrations.mqtt"):
        rig.listener.client.publish("frigate/cam1/detect/set", "SIDEWAYS", qos=1)
        rig.listener.client.publish("frigate/cam1/motion/set", "OFF", qos=1)  # not while detect is on
        assert _command(rig, "motion_threshold", "40").text == "40"
        deadline = time.monotonic() + 15
        while "frigate/cam1/detect/set" not in caplog.text or "turning off motion" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    assert node.current_config().cameras["cam1"].detect.enabled
    assert node.current_config().cameras["cam1"].motion.threshold == 40
    assert node.processes()["cam1/pipeline"] == pipeline_pid  # applied in place, no restart

    # detect OFF: open events end, no new ones while people walk on
    assert _command(rig, "detect", "OFF").text == "OFF"
    assert node.current_config().cameras["cam1"].detect.enabled is False
    for event_id in notes.open_ids():
        notes.wait(lambda n, i=event_id: n["event"]["id"] == i and n["event_type"] == "end", 30)
    mark = notes.mark()
    with pytest.raises(AssertionError):  # the check is that nothing comes: wait the whole time
        notes.wait(lambda n: n["event_type"] == "start", 6, after=mark)
    assert node.processes()["cam1/pipeline"] == pipeline_pid

    # detect ON again: events start again
    mark = notes.mark()
    assert _command(rig, "detect", "ON").text == "ON"
    notes.wait(lambda n: n["event_type"] == "start", 40, after=mark)

    # recordings ON starts the recorder process, OFF stops it
    assert _command(rig, "recordings", "ON").text == "ON"
    assert node.processes().get("cam1/recorder") is not None
    assert _command(rig, "recordings", "OFF").text == "OFF"
    assert "cam1/recorder" not in node.processes()
    assert _command(rig, "motion_threshold", "25").text == "25"

    # a change made elsewhere (the API, a reload of the file) is published too
    for enabled, payload in ((False, "OFF"), (True, "ON")):
        mark = rig.listener.mark()
        base = node.current_config()
        assert node.apply_config(changed_config(base, Command("cam1", "snapshots", enabled)), base=base).ok
        rig.listener.wait(lambda m, p=payload: m.topic == "frigate/cam1/snapshots/state" and m.text == p, 10,
                          after=mark)


def test_broker_restart_loses_no_event(rig: Rig) -> None:
    lis, notes = rig.listener, rig.notes
    rig.broker.stop()
    outage, heard = notes.mark(), lis.mark()
    # events go on being journalled while the broker is away
    notes.wait(lambda n: True, 30, after=outage)
    deadline = time.monotonic() + 20
    while rig.node.status().sinks["mqtt"]["connected"]:
        assert time.monotonic() < deadline, "the sink did not notice the broker was gone"
        time.sleep(0.1)
    time.sleep(1.0)  # let a few more events pile up in the journal while the broker is down
    assert rig.node.status().sinks["mqtt"]["lag"] > 0
    during = notes.notes[outage:]
    rig.broker.start()
    # every message journalled during the outage arrives after it, as many times at least
    types = {"start": "new", "update": "update", "end": "end"}
    want = Counter((n["event"]["id"], types[n["event_type"]]) for n in during)
    deadline = time.monotonic() + 40
    while True:
        got = Counter((e["after"]["id"], e["type"]) for e in _events(lis.messages[heard:]))
        missing = want - got
        if not missing:
            break
        assert time.monotonic() < deadline, f"not delivered after the restart: {sorted(missing)}"
        time.sleep(0.2)
    assert rig.node.status().sinks["mqtt"]["connected"] == 1
    assert rig.node.status().sinks["mqtt"]["failed"] >= 1


_HOLDER = """
import sys, time
from camfleet.config.mqtt import MqttSettings, MqttTls
from camfleet.integrations.mqtt.client import Broker
b = Broker(MqttSettings(host="127.0.0.1", port=int(sys.argv[1]), topic_prefix="held", client_id="held"))
b.start()
while not b.connected:
    time.sleep(0.02)
print("up", flush=True)
time.sleep(120)
"""


def test_last_will_offline_after_kill_9(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    lis = Listener(broker.port, "held/available", client_id="will-listener")
    src = Path(__file__).resolve().parents[1] / "src"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(broker.port)], stdout=subprocess.PIPE,
                            env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"})
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        lis.wait(lambda m: m.text == "online", 10)
        proc.kill()  # SIGKILL: no clean disconnect, the broker sends the will
        proc.wait(5)
        offline = lis.wait(lambda m: m.text == "offline", 10)
        assert offline.topic == "held/available"
        late = Listener(broker.port, "held/available", client_id="late-will")
        try:
            assert late.wait(lambda m: True, 5).text == "offline"  # retained
        finally:
            late.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        lis.close()
        broker.stop()


def test_wrong_password_is_a_clear_error_and_never_logged(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    broker = Mosquitto(tmp_path / "broker", users={"cam": "right-pass-123"})
    broker.start()
    caplog.set_level(logging.DEBUG)
    bad = Broker(MqttSettings(host="127.0.0.1", port=broker.port, user="cam", password="wrong-pass-456"))
    sink = MqttSink(bad, data_dir=tmp_path, off_delay=1, confirm_timeout=2)
    good = Broker(MqttSettings(host="127.0.0.1", port=broker.port, user="cam", password="right-pass-123",
                               client_id="good"))
    try:
        bad.start()
        deadline = time.monotonic() + 10
        while "Not authorized" not in bad.error:
            assert time.monotonic() < deadline, bad.error
            time.sleep(0.05)
        stats = sink.stats()
        assert stats["connected"] == 0 and "check mqtt.user and mqtt.password" in stats["broker_error"]
        ev = Event(id="x", camera="c", label="person", start=1.0)
        with pytest.raises(ConnectionError, match="refused the connection") as err:
            sink.write([EventMessage("start", ev)])
        assert "wrong-pass" not in str(err.value)
        good.start()
        deadline = time.monotonic() + 10
        while not good.connected:
            assert time.monotonic() < deadline, good.error
            time.sleep(0.05)
        good.publish_confirmed([Publication("x", "1")], 5)
    finally:
        bad.stop()
        good.stop()
        broker.stop()
    assert "wrong-pass" not in caplog.text and "right-pass" not in caplog.text
    assert "Not authorized" in caplog.text


def test_tls_with_the_configured_ca(tmp_path: Path) -> None:
    files = make_ca_and_server(tmp_path)
    broker = Mosquitto(tmp_path / "broker", tls=files)
    broker.start()
    trusting = Broker(MqttSettings(host="localhost", port=broker.port, client_id="trusting",
                                   tls=MqttTls(ca=str(files.ca))))
    system = Broker(MqttSettings(host="localhost", port=broker.port, client_id="system", tls=MqttTls()))
    try:
        trusting.start()
        system.start()
        deadline = time.monotonic() + 10
        while not trusting.connected or "cannot connect" not in system.error:
            assert time.monotonic() < deadline, (trusting.error, system.error)
            time.sleep(0.05)
        trusting.publish_confirmed([Publication("x", "1")], 5)
        assert not system.connected  # the test CA is not in the system's store
    finally:
        trusting.stop()
        system.stop()
        broker.stop()


def test_a_stopping_node_takes_no_command(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Last of the module's node: once quiesced (camfleet is stopping) a command changes nothing."""
    rig.mqtt.quiesce()
    with caplog.at_level(logging.WARNING, logger="camfleet.integrations.mqtt"):
        rig.listener.client.publish("frigate/cam1/snapshots/set", "OFF", qos=1)
        deadline = time.monotonic() + 10
        while "camfleet is stopping" not in caplog.text:
            assert time.monotonic() < deadline, caplog.text
            time.sleep(0.05)
    assert rig.node.current_config().cameras["cam1"].snapshots.enabled
