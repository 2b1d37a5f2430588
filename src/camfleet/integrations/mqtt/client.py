"""The connection to the broker: a paho-mqtt client built from the ``mqtt`` settings.

:class:`Broker` connects in the background and reconnects with back-off (paho's own loop),
sets ``<prefix>/available`` ``offline`` (retained) as its last will, says why it is not
connected (a refused password, an unreachable host) without ever showing the password, and
publishes with or without waiting for the broker's acknowledgement.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from camfleet.config.mqtt import MqttSettings
from camfleet.redact import mask_text

from .payloads import Publication

log = logging.getLogger("camfleet.integrations.mqtt")

__all__ = ["RECONNECT_MAX_S", "RECONNECT_MIN_S", "Broker"]

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
"""Reconnection back-off bounds, seconds (paho doubles the wait after each failure)."""

MessageHandler = Callable[[str, bytes], None]

_AUTH_REFUSALS = frozenset({"Not authorized", "Bad user name or password"})


class Broker:
    """One MQTT connection for the integration; thread-safe.

    ``on_connected`` runs (in paho's thread) after each successful connection, so that retained
    state is published again; ``on_message(topic, payload)`` gets the messages of the
    subscriptions (``subscribe``), also in paho's thread: keep it short.
    """

    def __init__(self, settings: MqttSettings, *, resolve: Callable[[str], Path] = Path,
                 on_connected: Callable[[], None] | None = None,
                 on_message: MessageHandler | None = None, subscribe: Sequence[str] = ()) -> None:
        self.settings = settings
        self.where = f"{settings.host}:{settings.port}"
        self.prefix = settings.topic_prefix
        self.on_connected = on_connected
        self.on_message = on_message
        self.subscriptions = list(subscribe)
        self.error = "not connected yet"
        self.connects = 0
        self._lock = threading.Lock()
        self._logged_error = ""
        self._up = False  # connected since the last CONNACK (a refused one never is)
        self.client = self._build(resolve)
        self._resolve = resolve

    def _build(self, resolve: Callable[[str], Path]) -> paho.Client:
        s = self.settings
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=paho.MQTTv311)
        if s.user is not None:
            client.username_pw_set(s.user, s.password)
        client.will_set(self.topic("available"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def topic(self, name: str) -> str:
        """``<prefix>/<name>``."""
        return f"{self.prefix}/{name}"

    # ------------------------------------------------------------------ life cycle

    def start(self) -> None:
        """Connect in the background (retried with back-off until :meth:`stop`)."""
        tls = self.settings.tls
        if tls is not None:
            try:
                self.client.tls_set(ca_certs=str(self._resolve(tls.ca)) if tls.ca else None,
                                    certfile=str(self._resolve(tls.cert)) if tls.cert else None,
                                    keyfile=str(self._resolve(tls.key)) if tls.key else None)
                self.client.tls_insecure_set(tls.insecure)
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                # the node runs on without MQTT; the status says why
                files = ", ".join(f for f in (tls.ca, tls.cert, tls.key) if f)
                self._note_error(f"mqtt.tls: cannot load {files or 'the system CA store'}: {exc}",
                                 retrying=False)
                return
        log.info("mqtt: connecting to %s as %s", self.where, self.settings.client_id)
        self.client.connect_async(self.settings.host, self.settings.port, keepalive=30)
        self.client.loop_start()

    def stop(self, timeout: float = 3.0) -> None:
        """Say ``offline`` (retained), disconnect and stop the network thread."""
        if self.connected:
            info = self.client.publish(self.topic("available"), "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    @property
    def connected(self) -> bool:
        """Whether the broker accepted the connection and it is up."""
        return self.client.is_connected()

    # ------------------------------------------------------------------ publishing

    def publish(self, pub: Publication, qos: int | None = None) -> paho.MQTTMessageInfo:
        """Send ``pub`` without waiting (queued by paho; dropped while disconnected with QoS 0)."""
        return self.client.publish(self.topic(pub.topic), pub.payload,
                                   qos=self.settings.qos if qos is None else qos, retain=pub.retain)

    def publish_confirmed(self, pubs: Sequence[Publication], timeout: float) -> None:
        """Send ``pubs`` in order and wait until the broker acknowledged each (QoS ≥ 1).

        Raises ConnectionError when not connected or the connection drops, TimeoutError when no
        acknowledgement came for ``timeout`` seconds (a large batch on a slow link takes as long
        as it needs while it progresses; the caller sends a failed batch again).
        """
        if not self.connected:
            raise ConnectionError(f"MQTT broker {self.where}: {self.error}")
        infos = [self.publish(p) for p in pubs]
        for info in infos:
            end = time.monotonic() + timeout  # acknowledgements come in order: time without progress
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                raise ConnectionError(f"MQTT broker {self.where}: publishing failed "
                                      f"({paho.error_string(info.rc)})")
            try:
                info.wait_for_publish(max(0.0, end - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                raise ConnectionError(f"MQTT broker {self.where}: publishing failed ({exc})") from None
            if not info.is_published():
                if not self.connected:
                    raise ConnectionError(f"MQTT broker {self.where}: connection lost ({self.error})")
                raise TimeoutError(f"MQTT broker {self.where}: no acknowledgement within {timeout:g} s")

    # ------------------------------------------------------------------ paho callbacks

    def _note_error(self, error: str, *, retrying: bool = True) -> None:
        error = mask_text(error)
        with self._lock:
            self.error = error
            first = error != self._logged_error
            self._logged_error = error
        if first:  # once per distinct reason, not at every retry of the back-off
            log.warning("mqtt: %s: %s%s", self.where, error, " (retrying with back-off)" if retrying else "")

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            hint = (" (check mqtt.user and mqtt.password)" if str(reason) in _AUTH_REFUSALS else "")
            self._note_error(f"the broker refused the connection: {reason}{hint}")
            return
        with self._lock:
            self._up = True
            self.error = ""
            self._logged_error = ""
            self.connects += 1
        log.info("mqtt: connected to %s", self.where)
        for topic in self.subscriptions:
            client.subscribe(topic, qos=self.settings.qos)
        client.publish(self.topic("available"), "online", qos=1, retain=True)
        if self.on_connected is not None:
            try:
                self.on_connected()
            except Exception:
                log.exception("mqtt: publishing the state after connecting failed")

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._note_error("cannot connect to the broker (refused, unreachable or TLS failed)")

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        with self._lock:
            was_up, self._up = self._up, False
        if not was_up:
            return  # a refused connection: keep the broker's reason
        if reason.is_failure:
            self._note_error(f"connection lost: {reason}")
        else:
            with self._lock:
                self.error = "disconnected"

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self.on_message is None:
            return
        try:
            self.on_message(message.topic, bytes(message.payload))
        except Exception:
            log.exception("mqtt: handling a message on %s failed", message.topic)
