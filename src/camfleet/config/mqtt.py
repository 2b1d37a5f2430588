"""The ``mqtt`` section: the broker camfleet publishes to, as Frigate does (see docs/mqtt.md).

:class:`MqttSettings` holds where the broker is, how to log in (``user`` /
``password``; the password never appears in a log line, an error or the API's
view of the configuration), TLS (:class:`MqttTls`), the topic prefix, the QoS
of every publication and the intervals of the stats and of the motion ``OFF``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from camfleet.redact import MASK

from .base import _Strict

__all__ = ["MqttSettings", "MqttTls"]


class MqttTls(_Strict):
    """TLS to the broker: the CA to trust, a client certificate, and whether the host name is checked.

    Paths are absolute or relative to ``data_dir``; no ``ca`` trusts the system's store.
    """

    ca: str | None = Field(default=None, min_length=1,
                           description="PEM file of the CA that signed the broker")
    cert: str | None = Field(default=None, min_length=1, description="client certificate (PEM), with 'key'")
    key: str | None = Field(default=None, min_length=1, description="client private key (PEM), with 'cert'")
    insecure: bool = Field(default=False,
                           description="do not check the broker's host name against its certificate")

    @model_validator(mode="after")
    def _cert_with_key(self) -> MqttTls:
        if (self.cert is None) != (self.key is None):
            raise PydanticCustomError("mqtt_tls",
                                      "give both 'cert' and 'key' for a client certificate, or neither")
        return self


class MqttSettings(_Strict):
    """The MQTT broker and what camfleet publishes there (Frigate's topics and payloads)."""

    enabled: bool = Field(default=True, description="publish to the broker (false keeps the settings, idle)")
    host: str = Field(min_length=1, max_length=253, description="broker host name or IP address")
    port: int = Field(default=1883, ge=1, le=65535)
    user: str | None = Field(default=None, min_length=1, description="user name (use ${ENV} for secrets)")
    password: str | None = Field(default=None, min_length=1,
                                 description="password, with 'user'; never logged or shown by the API")
    tls: MqttTls | None = Field(default=None, description="connect with TLS (typically port 8883)")
    topic_prefix: str = Field(default="frigate", min_length=1, max_length=128,
                              pattern=r"^[^#+/\x00]([^#+\x00]*[^#+/\x00])?$",
                              description="the first level of every topic (no '#', '+' or outer '/')")
    client_id: str = Field(default="camfleet", min_length=1, max_length=128,
                           description="MQTT client id; unique per broker (two clients with one id "
                                       "disconnect each other)")
    qos: Literal[0, 1, 2] = Field(
        default=1,
        description="QoS of every publication; 1 or 2: an event counts as delivered once the broker "
                    "acknowledged it (0: once written to the socket, so an outage can lose some)")
    stats_interval: float = Field(default=60.0, ge=15, le=86400, description="seconds between <prefix>/stats")
    off_delay: float = Field(default=30.0, ge=0, le=3600,
                             description="seconds without motion before <prefix>/<camera>/motion turns "
                                         "OFF (Frigate's motion.mqtt_off_delay)")
    confirm_timeout: float = Field(default=10.0, gt=0, le=600,
                                   description="seconds to wait for the broker to acknowledge a batch "
                                               "before it counts as undelivered (retried)")

    @model_validator(mode="after")
    def _password_with_user(self) -> MqttSettings:
        if self.password is not None and self.user is None:
            raise PydanticCustomError("mqtt_auth", "'password' needs 'user'")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Like pydantic's, with the password masked (reprs end up in logs)."""
        for name, value in super().__repr_args__():
            yield name, (MASK if name == "password" and value is not None else value)
