"""A real MQTT broker for tests: Debian's ``mosquitto`` on a free port, and a listening client.

:class:`Mosquitto` writes a throw-away configuration (anonymous or a password file; plain or
TLS), starts
the broker, waits until it accepts connections, and can be stopped and started again on the
same port (its state persisted in between, as a real broker restart). :class:`Listener` is a
paho client that records every message it receives, waitable.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.tls_ca import TlsFiles

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A mosquitto process on ``127.0.0.1:port``; with ``users`` it needs a user name and password."""

    def __init__(self, workdir: Path, users: dict[str, str] | None = None,
                 tls: TlsFiles | None = None) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [f"listener {self.port} 127.0.0.1", f"allow_anonymous {'false' if users else 'true'}",
                 "persistence true", f"persistence_location {self.dir}/", "autosave_interval 0",
                 f"log_dest file {self.log}", "log_type all", f"user {getpass.getuser()}"]
        if tls is not None:  # TLS only on this listener, with the server certificate the test CA signed
            lines += [f"cafile {tls.ca}", f"certfile {tls.cert}", f"keyfile {tls.key}"]
        if users:
            pw = self.dir / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                               capture_output=True, timeout=10)
            lines.append(f"password_file {pw}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker; returns once it accepts TCP connections."""
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        end = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    log = self.log.read_text()[-2000:] if self.log.exists() else ""
                    raise RuntimeError(f"mosquitto did not start on port {self.port}: {log}") from None
                time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it as a service manager would (SIGTERM: it saves its state first)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@dataclass(frozen=True)
class Received:
    """One message a :class:`Listener` got (``retain``: it came from the broker's retained store)."""

    topic: str
    payload: bytes
    retain: bool
    at: float

    @property
    def text(self) -> str:
        """The payload as text."""
        return self.payload.decode("utf-8", "replace")


class Listener:
    """A paho client subscribed to ``topic`` (QoS 1, persistent session) that records what it receives."""

    def __init__(self, port: int, topic: str = "#", *, client_id: str = "test-listener",
                 persistent: bool = False) -> None:
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self.topic = topic
        self.connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311,
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_a: self.connected.clear()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), "the test listener did not connect"

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(self.topic, qos=1)
            self.connected.set()

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain),
                                          time.monotonic()))
            self._cond.notify_all()

    def wait(self, ok: Callable[[Received], bool], timeout: float, after: int = 0) -> Received:
        """The first message from index ``after`` on for which ``ok`` holds.

        AssertionError after ``timeout`` seconds.
        """
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[after:]:
                    if ok(m):
                        return m
                left = end - time.monotonic()
                if left <= 0:
                    topics = sorted({m.topic for m in self.messages[after:]})
                    raise AssertionError(f"no such MQTT message within {timeout} s; topics seen: {topics}")
                self._cond.wait(min(left, 0.5))

    def all(self, ok: Callable[[Received], bool], after: int = 0) -> list[Received]:
        """Every message so far (from index ``after``) for which ``ok`` holds."""
        with self._cond:
            return [m for m in self.messages[after:] if ok(m)]

    def mark(self) -> int:
        """The index of the next message (for ``after``)."""
        with self._cond:
            return len(self.messages)

    def close(self) -> None:
        """Disconnect and stop its thread."""
        self.client.disconnect()
        self.client.loop_stop()
