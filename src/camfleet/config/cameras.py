"""The ``cameras`` section (and ``defaults``): streams, detect size and rate, zones, recording.

:class:`CameraConfig` is one camera; :class:`SourceConfig` one of its streams
(with :class:`TlsSettings` for ``rtsps://``/``https://``); :class:`DetectSettings`,
:class:`ZoneConfig` and :class:`RecordSettings` (with :class:`RetainDays`) the
rest of it. :class:`CameraDefaults` is what ``defaults`` may give every camera;
the merge itself is :func:`camfleet.config.references.merge_defaults`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from camfleet.redact import mask_url
from camfleet.urlkinds import source_kind

from .base import EvenSize, Name, Polygon, Role, _Strict

__all__ = [
    "CameraConfig",
    "CameraDefaults",
    "DetectSettings",
    "MotionSettings",
    "RecordSettings",
    "RetainDays",
    "SnapshotSettings",
    "SourceConfig",
    "TlsSettings",
    "ZoneConfig",
]


class TlsSettings(_Strict):
    """Certificate checks of an ``rtsps://`` or ``https://`` camera (verified by default)."""

    verify: bool = Field(
        default=True,
        description="check the camera's certificate and host name; false accepts any certificate "
        "(anyone on the network path can then impersonate the camera)",
    )
    ca_file: str | None = Field(
        default=None, min_length=1,
        description="PEM file of the certificate authority to trust for this camera (or its "
        "self-signed certificate), absolute or relative to data_dir; default: the system's trust store",
    )

    @model_validator(mode="after")
    def _ca_needs_verify(self) -> TlsSettings:
        if self.ca_file is not None and not self.verify:
            raise PydanticCustomError("tls", "'ca_file' has no effect with 'verify: false'; remove one")
        return self


class SourceConfig(_Strict):
    """One stream of a camera and what it is used for.

    A camera usually has a high-resolution stream to record and a small one
    to detect on; one stream may serve both.
    """

    url: str = Field(
        min_length=1,
        description="rtsp://, rtsps://, http(s)://, a file path, /dev/videoN or synthetic://; "
        "use ${ENV} for credentials",
    )
    roles: list[Role] = Field(min_length=1, description="what this stream is used for: detect, record")
    transport: Literal["tcp", "udp"] | None = Field(default=None, description="RTSP transport (default tcp)")
    hwaccel: Literal["cuda", "vaapi", "qsv"] | None = Field(
        default=None, description="decode on the GPU when available"
    )
    open_timeout: float | None = Field(default=None, gt=0, description="seconds to connect")
    stall_timeout: float | None = Field(
        default=None, gt=0, description="seconds without a frame before reconnecting"
    )
    loop: bool = Field(default=False, description="files only: start again at the end")
    realtime: bool = Field(default=False, description="files only: pace at the file's frame rate")
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="rtsps:// and https:// only: certificate verification; for a self-signed "
        "camera set ca_file to its CA (or certificate), or verify: false",
    )
    corrupt_degraded_per_min: float = Field(
        default=30.0, ge=0,
        description="frames per minute decoded from damaged data past which the camera is "
        "reported degraded ('corrupt stream: N frames/min'); 0 never reports it",
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        try:
            source_kind(url)
        except ValueError as exc:  # its message carries the URL masked
            raise PydanticCustomError("source_url", "{reason}", {"reason": str(exc)}) from None
        return url

    @field_validator("roles")
    @classmethod
    def _unique_roles(cls, roles: list[str]) -> list[str]:
        if len(set(roles)) != len(roles):
            raise PydanticCustomError("duplicate_role", "a role is listed twice")
        return roles

    @model_validator(mode="after")
    def _transport_is_rtsp(self) -> SourceConfig:
        if self.transport is not None and not self.url.lower().startswith(("rtsp://", "rtsps://")):
            raise PydanticCustomError("transport", "'transport' applies to rtsp:// and rtsps:// sources only")
        return self

    @model_validator(mode="after")
    def _tls_is_for_tls_urls(self) -> SourceConfig:
        # the default settings are allowed anywhere: a camera dumped and read again (the API's
        # overlay) carries them for every URL
        if self.tls != TlsSettings() and not self.url.lower().startswith(("rtsps://", "https://")):
            raise PydanticCustomError("tls", "'tls' applies to rtsps:// and https:// sources only")
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Like pydantic's, with the URL's credentials masked (reprs end up in logs)."""
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "url" and isinstance(value, str) else value)

    @property
    def public_url(self) -> str:
        """The URL with any user name and password masked."""
        return mask_url(self.url)


class DetectSettings(_Strict):
    """Size and rate of the frames a camera's pipeline sees (scaled once, at ingest)."""

    width: EvenSize | None = Field(default=None, description="frame width (default: the stream's own)")
    height: EvenSize | None = Field(default=None, description="frame height (default: the stream's own)")
    fps: float = Field(default=5.0, gt=0, le=240, description="frames per second analysed")
    enabled: bool = Field(default=True,
                          description="run the pipeline's detect element (false: motion goes on, no new "
                                      "objects or events); switched live, e.g. by MQTT <camera>/detect/set")

    @model_validator(mode="after")
    def _both_or_neither(self) -> DetectSettings:
        if (self.width is None) != (self.height is None):
            raise PydanticCustomError("detect_size", "give both width and height, or neither")
        return self


class SnapshotSettings(_Strict):
    """Whether the pipeline's snapshot element writes a JPEG of each event's best frame."""

    enabled: bool = Field(default=True, description="false: events get no snapshot (switched live)")


class MotionSettings(_Strict):
    """Per-camera overrides of the pipeline's motion element, switched live (e.g. by MQTT).

    ``threshold`` overrides the element's ``threshold`` (luma difference 0..255, as Frigate's);
    ``contour_area`` is Frigate's smallest moving region, in pixels of a picture scaled to 100
    rows (Frigate's default ``frame_height``); the motion element converts it to its own plane.
    """

    enabled: bool = Field(default=True,
                          description="run the motion element (false: no motion, so no motion-gated "
                                      "detection and no motion recording spans)")
    threshold: int | None = Field(default=None, ge=1, le=255,
                                  description="luma difference that counts as change (default: the "
                                              "element's own)")
    contour_area: int | None = Field(default=None, ge=0, le=1_000_000,
                                     description="smallest moving region, pixels of a 100-row picture "
                                                 "(Frigate's contour_area; default: the element's min_area)")


class ZoneConfig(_Strict):
    """A named region of the frame; events say which zones an object entered."""

    points: Polygon
    labels: list[Name] | None = Field(
        default=None, description="labels that count in this zone (default: all)"
    )


class RetainDays(_Strict):
    """How many days recordings of each mode are kept (0: delete at the next cleanup)."""

    continuous: float = Field(default=7.0, ge=0, le=3650)
    motion: float = Field(default=14.0, ge=0, le=3650)
    events: float = Field(default=30.0, ge=0, le=3650)


class RecordSettings(_Strict):
    """Recording of a camera: segments remuxed from its packet ring, or encoded from its frames."""

    enabled: bool = False
    mode: Literal["continuous", "motion", "events"] = Field(
        default="continuous", description="keep everything, only spans with motion, or only event spans"
    )
    segment_seconds: float = Field(default=10.0, gt=0, le=3600,
                                   description="segment length (cut at keyframes)")
    pre_capture: float = Field(default=5.0, ge=0, le=300, description="seconds kept before motion/an event")
    post_capture: float = Field(default=5.0, ge=0, le=300, description="seconds kept after motion/an event")
    retain_days: RetainDays = Field(default_factory=RetainDays)
    transcode: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="auto: remux H.264/H.265 as is, encode other codecs (MJPEG, MPEG-4, raw) to H.264; "
                    "always: encode every camera; never: record only what can be remuxed. Encoded recordings "
                    "are made from the decoded detect stream, so they have the detect width, height and fps; "
                    "the encoder is a hardware H.264 encoder when one works, else libx264",
    )


class CameraDefaults(_Strict):
    """Keys merged into every camera (deep merge; the camera's own values win)."""

    enabled: bool | None = None
    detect: DetectSettings | None = None
    record: RecordSettings | None = None
    snapshots: SnapshotSettings | None = None
    motion: MotionSettings | None = None
    pipeline: Name | None = None
    zones: dict[Name, ZoneConfig] | None = None
    masks: list[Polygon] | None = None


class CameraConfig(_Strict):
    """One camera: its streams, the frames its pipeline sees, zones and masks."""

    enabled: bool = True
    sources: list[SourceConfig] = Field(min_length=1)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    record: RecordSettings = Field(default_factory=RecordSettings)
    snapshots: SnapshotSettings = Field(default_factory=SnapshotSettings)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    pipeline: Name = Field(description="name of a pipeline under 'pipelines' (or set in 'defaults')")
    zones: dict[Name, ZoneConfig] = Field(default_factory=dict)
    masks: list[Polygon] = Field(default_factory=list, description="regions ignored by motion and detection")

    @field_validator("sources")
    @classmethod
    def _roles_once(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        for role in ("detect", "record"):
            count = sum(role in s.roles for s in sources)
            if count > 1:
                raise PydanticCustomError(
                    "source_roles", "role '{role}' is given to {count} sources; give it to one",
                    {"role": role, "count": count},
                )
        if not any("detect" in s.roles for s in sources):
            raise PydanticCustomError("source_roles", "no source has the role 'detect'")
        return sources

    def source(self, role: Role) -> SourceConfig | None:
        """The source with ``role``, if any (there is always one for ``"detect"``)."""
        return next((s for s in self.sources if role in s.roles), None)

    @property
    def detect_source(self) -> SourceConfig:
        """The stream the pipeline analyses."""
        found = self.source("detect")
        assert found is not None  # guaranteed by validation
        return found
