"""MQTT as Frigate speaks it: events, counts, snapshots, motion, camera commands, stats.

:class:`MqttIntegration` ties the parts to a node (see docs/mqtt.md for the topics):

* :mod:`.client`: the broker connection (last will, reconnect back-off, TLS, credentials);
* :mod:`.sink`: the outbox sink publishing events, counts, snapshots and motion ``ON``;
* :mod:`.book` / :mod:`.payloads`: Frigate's payloads and the state they need (pure);
* :mod:`.commands`: ``<camera>/<command>/set`` → a configuration change applied live;
* :mod:`.stats`: ``<prefix>/stats``.

Besides the sink, one worker thread applies commands (never paho's network thread: a change
may start and stop processes) and publishes the stats and the delayed motion ``OFF``.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Sequence

from camfleet.config import Config
from camfleet.config.mqtt import MqttSettings
from camfleet.events import OutboxSink
from camfleet.integrations import Integration
from camfleet.runtime.control import NodeControl

from .client import Broker
from .commands import Command, CommandError, camera_states, changed_config, parse_command, tracked_labels
from .payloads import Publication
from .sink import MqttSink
from .stats import frigate_stats

log = logging.getLogger("camfleet.integrations.mqtt")

__all__ = ["MqttIntegration", "mqtt_integrations"]

COMMAND_QUEUE = 256
"""Commands waiting to be applied; past this, new ones are dropped (logged)."""


def mqtt_integrations(config: Config) -> list[Integration]:
    """The MQTT integration when ``config`` has an enabled ``mqtt`` section (else none)."""
    settings = config.mqtt
    if settings is None or not settings.enabled:
        return []
    return [MqttIntegration(settings, config)]


class MqttIntegration:
    """Publishes a node's events and state to an MQTT broker and takes Frigate's camera commands."""

    name = "mqtt"

    def __init__(self, settings: MqttSettings, config: Config) -> None:
        self.settings = settings
        self._node: NodeControl | None = None
        self.broker = Broker(settings, resolve=config.resolve_path, on_connected=self._on_connected,
                             on_message=self._on_message, subscribe=[f"{settings.topic_prefix}/+/+/set"])
        self.sink = MqttSink(self.broker, data_dir=config.data_path, off_delay=settings.off_delay,
                             confirm_timeout=settings.confirm_timeout, has_clip=self._records)
        self._commands: queue.Queue[Command] = queue.Queue(COMMAND_QUEUE)
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._stats_at = 0.0
        self._apply_lock = threading.Lock()  # held while a command changes the node
        self._quiesced = False
        self._states_lock = threading.Lock()
        self._states: dict[str, dict[str, str]] = {}  # camera -> the /state payloads last published
        self._states_of: Config | None = None  # the configuration they were last compared with

    # ------------------------------------------------------------------ Integration

    def sinks(self) -> Sequence[OutboxSink]:
        """The MQTT outbox sink."""
        return [self.sink]

    def start(self, node: NodeControl) -> None:
        """Connect (in the background) and start the worker thread."""
        self._node = node
        self._stats_at = time.monotonic()  # the first stats after one interval, as Frigate
        self.broker.start()
        self._worker = threading.Thread(target=self._work, name="camfleet-mqtt", daemon=True)
        self._worker.start()

    def quiesce(self) -> None:
        """Take no more commands (the node is about to stop); waits for one being applied."""
        with self._apply_lock:
            self._quiesced = True

    def stop(self) -> None:
        """Stop the worker, say ``offline`` and disconnect."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(10)
        self.broker.stop()

    # ------------------------------------------------------------------ state

    def _records(self, camera: str) -> bool:
        node = self._node
        if node is None:
            return False
        cam = node.current_config().cameras.get(camera)
        return cam is not None and cam.enabled and cam.record.enabled

    def _on_connected(self) -> None:
        """Retained camera states and the motion state, as Frigate sends them on connecting."""
        node = self._node
        if node is None:
            return
        config = node.current_config()
        motion = self.sink.motion_states()
        for camera in config.cameras:
            self._publish_states(config, camera, force=True)
            self.broker.publish(Publication(f"{camera}/motion", motion.get(camera, "OFF")))
        for pub in self.sink.events.current(tracked_labels(config)):
            self.broker.publish(pub)

    def _publish_states(self, config: Config, camera: str, *, force: bool = True) -> None:
        """Publish ``camera``'s retained states under ``config`` (without ``force``: those that changed)."""
        states = camera_states(config, camera)
        with self._states_lock:
            last = {} if force else self._states.get(camera, {})
            self._states[camera] = states
            for command, value in states.items():
                if last.get(command) != value:
                    self.broker.publish(Publication(f"{camera}/{command}/state", value, retain=True))

    def _follow_config(self) -> None:
        """After a change not made by a command (a reload of the file, the API), publish the new states."""
        node = self._node
        if node is None or not self.broker.connected:
            return
        config = node.current_config()
        if config is self._states_of:
            return
        self._states_of = config
        for camera in config.cameras:
            self._publish_states(config, camera, force=False)

    # ------------------------------------------------------------------ commands

    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            command = parse_command(topic, payload, self.settings.topic_prefix)
        except CommandError as exc:
            log.warning("mqtt: ignored a command: %s", exc)
            return
        try:
            self._commands.put_nowait(command)
        except queue.Full:
            log.warning("mqtt: ignored a command on %s: %d commands are waiting already", topic,
                        COMMAND_QUEUE)

    def apply(self, command: Command) -> bool:
        """Carry out ``command`` on the node; publishes the camera's states after it (True if applied)."""
        node = self._node
        assert node is not None
        for _attempt in range(3):  # another change may come in between: build it again
            base = node.current_config()
            try:
                new = changed_config(base, command)
            except CommandError as exc:
                log.warning("mqtt: ignored a command on %s/%s/%s/set: %s", self.settings.topic_prefix,
                            command.camera, command.name, exc)
                if command.camera in base.cameras:
                    self._publish_states(base, command.camera)  # a switch flipped in a UI flips back
                return False
            if new is base:
                self._publish_states(base, command.camera)
                return True
            result = node.apply_config(new, base=base)
            if result.ok:
                log.info("mqtt: %s %s set to %s", command.camera, command.name, command.state)
                self._publish_states(new, command.camera)
                return True
            if not any("changed while this change was prepared" in e for e in result.errors):
                log.error("mqtt: %s %s %s refused by the node: %s", command.camera, command.name,
                          command.state, "; ".join(result.errors))
                self._publish_states(node.current_config(), command.camera)
                return False
        return False

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                command = self._commands.get(timeout=self._tick())
            except queue.Empty:
                continue
            try:
                with self._apply_lock:
                    if self._quiesced:
                        log.warning("mqtt: ignored a command on %s/%s/%s/set: camfleet is stopping",
                                    self.settings.topic_prefix, command.camera, command.name)
                        continue
                    self.apply(command)
            except Exception:
                log.exception("mqtt: applying %s/%s failed", command.camera, command.name)

    def _tick(self) -> float:
        """Publish what is due (motion OFF, stats); how long the worker may wait now (s)."""
        try:
            self.sink.motion_due(time.time())
            self._follow_config()
            now = time.monotonic()
            if now - self._stats_at >= self.settings.stats_interval:
                self._stats_at = now
                self.publish_stats()
        except Exception:
            log.exception("mqtt: periodic publishing failed")
        return 0.25

    def publish_stats(self) -> None:
        """Publish ``<prefix>/stats`` now (when connected)."""
        node = self._node
        if node is None or not self.broker.connected:
            return
        payload = json.dumps(frigate_stats(node.status(), node.current_config()), separators=(",", ":"))
        self.broker.publish(Publication("stats", payload))
