"""The configuration's typed model: pydantic v2, strict, unknown keys rejected.

The YAML a user writes maps one to one onto :class:`Config`::

    version: 1
    data_dir: ./camfleet-data
    defaults: {detect: {fps: 5}, pipeline: default}    # merged into every camera
    models:    {ssd-mobilenet-v2: {path: ..., runtime: tflite, input: {width: 300, height: 300}}}
    detectors: {cpu: {runtime: tflite, threads: 2}}
    pipelines: {default: [motion: {}, detect: {model: ssd-mobilenet-v2, detector: cpu}, track: {}]}
    cameras:   {door: {sources: [{url: "rtsp://...", roles: [detect, record]}]}}

Every model is strict (``"5"`` is not an integer) and forbids unknown keys.
Pipeline element parameters stay plain mappings here (this package cannot
import the pipeline): the loader validates them against each element's typed
model when it is handed the registry's
:class:`~camfleet.config.elements.ElementCatalog`, which is what
:mod:`camfleet.pipeline.validate` does. What this module does check across
sections is listed in :func:`reference_problems`.

Files are read with :mod:`camfleet.config.load`, which adds ``${ENV}``
substitution and errors that carry line and column.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError

from camfleet.redact import mask_url
from camfleet.urlkinds import source_kind

__all__ = [
    "CAMERA_NAME_PATTERN",
    "CameraConfig",
    "CameraDefaults",
    "Config",
    "ConfigPath",
    "DetectSettings",
    "DetectorConfig",
    "ElementSpec",
    "InputSize",
    "ModelConfig",
    "ApiSettings",
    "LogSettings",
    "Problem",
    "RecordSettings",
    "RetainDays",
    "RuntimeSettings",
    "SourceConfig",
    "StorageSettings",
    "TlsSettings",
    "ZoneConfig",
    "format_path",
    "merge_defaults",
    "reference_problems",
]

CAMERA_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,63}$"
"""Camera names become ring keys: 1-63 letters, digits, ``_`` or ``-``."""

_CAMERA_NAME_RE = re.compile(CAMERA_NAME_PATTERN)

ConfigPath = tuple[str | int, ...]
"""A location in the configuration data: mapping keys and list indexes."""


class _Strict(BaseModel):
    """Base of every configuration model: strict types, unknown keys rejected, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


# --------------------------------------------------------------------------- value types


def _camera_name(name: str) -> str:
    if not _CAMERA_NAME_RE.match(name):
        raise PydanticCustomError(
            "camera_name", "invalid camera name: use 1-63 letters, digits, '_' or '-' (it becomes a ring key)"
        )
    return name


CameraName = Annotated[
    str, AfterValidator(_camera_name), WithJsonSchema({"type": "string", "pattern": CAMERA_NAME_PATTERN})
]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Runtime = Literal["tflite", "onnx"]
Role = Literal["detect", "record"]
EvenSize = Annotated[int, Field(gt=0, le=16384, multiple_of=2)]
PositiveSize = Annotated[int, Field(gt=0, le=16384)]
Coordinate = Annotated[float, Field(ge=0.0, le=1.0)]
Point = Annotated[list[Coordinate], Field(min_length=2, max_length=2, description="[x, y], normalised 0..1")]
Polygon = Annotated[
    list[Point],
    Field(min_length=3, description="at least 3 [x, y] points, normalised 0..1 (0,0 is top left)"),
]


# --------------------------------------------------------------------------- sections


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

    @model_validator(mode="after")
    def _both_or_neither(self) -> DetectSettings:
        if (self.width is None) != (self.height is None):
            raise PydanticCustomError("detect_size", "give both width and height, or neither")
        return self


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
    """Recording of a camera: segments remuxed from its packet ring, never re-encoded."""

    enabled: bool = False
    mode: Literal["continuous", "motion", "events"] = Field(
        default="continuous", description="keep everything, only spans with motion, or only event spans"
    )
    segment_seconds: float = Field(default=10.0, gt=0, le=3600,
                                   description="segment length (cut at keyframes)")
    pre_capture: float = Field(default=5.0, ge=0, le=300, description="seconds kept before motion/an event")
    post_capture: float = Field(default=5.0, ge=0, le=300, description="seconds kept after motion/an event")
    retain_days: RetainDays = Field(default_factory=RetainDays)


class CameraDefaults(_Strict):
    """Keys merged into every camera (deep merge; the camera's own values win)."""

    enabled: bool | None = None
    detect: DetectSettings | None = None
    record: RecordSettings | None = None
    pipeline: Name | None = None
    zones: dict[Name, ZoneConfig] | None = None
    masks: list[Polygon] | None = None


class CameraConfig(_Strict):
    """One camera: its streams, the frames its pipeline sees, zones and masks."""

    enabled: bool = True
    sources: list[SourceConfig] = Field(min_length=1)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    record: RecordSettings = Field(default_factory=RecordSettings)
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


class InputSize(_Strict):
    """A model's input tensor size, in pixels."""

    width: PositiveSize
    height: PositiveSize


class ModelConfig(_Strict):
    """A detection model in the registry, referenced by its id from pipelines."""

    path: str = Field(min_length=1, description="model file; relative paths are under data_dir")
    runtime: Runtime
    input: InputSize
    labels: str | list[Name] | None = Field(
        default=None, description="labels file (one per line; relative to data_dir) or the labels inline"
    )


class DetectorConfig(_Strict):
    """A detector service: processes shared by every camera of a node, batching across them."""

    runtime: Runtime
    processes: int = Field(default=1, ge=1, le=64)
    threads: int = Field(default=1, ge=1, le=256, description="inference threads per process")
    max_batch: int = Field(default=8, ge=1, le=1024, description="most requests run together")
    max_wait_ms: float = Field(default=10.0, ge=0, le=10_000, description="longest wait to fill a batch")


class RuntimeSettings(_Strict):
    """The node supervisor: heartbeats, restarts with back-off, the terminal ``failed`` state."""

    heartbeat_timeout: float = Field(default=10.0, gt=0, le=3600,
                                     description="seconds without a heartbeat before a restart")
    startup_grace: float = Field(default=30.0, gt=0, le=3600,
                                 description="seconds a new process has to send its first heartbeat")
    backoff_initial: float = Field(default=0.5, gt=0, le=3600, description="first restart delay, seconds")
    backoff_max: float = Field(default=30.0, gt=0, le=86400, description="longest restart delay, seconds")
    max_failures: int = Field(default=5, ge=1, le=1000,
                              description="failures within failure_window that mark a camera failed")
    failure_window: float = Field(default=300.0, gt=0, le=86400, description="seconds")
    failed_retry: float = Field(default=300.0, gt=0, le=86400,
                                description="seconds between retries of a failed camera")
    stop_timeout: float = Field(default=5.0, gt=0, le=600,
                                description="seconds a process has to stop before it is killed")


class LogSettings(_Strict):
    """The main log and one rotating log file per camera, under ``<data_dir>/<dir>``."""

    dir: str = Field(default="logs", min_length=1)
    max_bytes: int = Field(default=10_000_000, ge=10_000, le=10_000_000_000, description="size of one file")
    backups: int = Field(default=5, ge=0, le=1000, description="rotated files kept per log")
    level: Literal["debug", "info", "warning", "error"] = "info"


class StorageSettings(_Strict):
    """The database and the recordings directory."""

    database: str | None = Field(
        default=None,
        description="SQLAlchemy URL (sqlite:///... or postgresql://...); default sqlite in data_dir",
    )
    recordings_dir: str = Field(default="recordings", min_length=1, description="relative to data_dir")
    min_free_mb: float = Field(default=1024.0, ge=0,
                               description="storage floor: below this free space the oldest continuous "
                                           "footage is deleted first")


class OutboxSettings(_Strict):
    """The node's durable event outbox (``<data_dir>/outbox.db``): how much of it is kept."""

    max_entries: int = Field(default=1_000_000, ge=1000,
                             description="most entries waiting for a sink; past this the oldest are "
                                         "dropped (counted and logged)")
    keep_delivered: int = Field(default=100_000, ge=0,
                                description="delivered entries kept (newest first) before trimming")
    fsync: bool = Field(default=True,
                        description="fsync each append (survives power loss); false: survives kill -9 "
                                    "of any process, not a power cut, and appends ~15x faster")


# a host name or IP address, optionally with :port ("cams.example.org", "cams.example.org:8443", "[fd00::1]")
_HOST_ENTRY = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]{1,5})?$"


class ApiSettings(_Strict):
    """The REST API and web UI served by ``camfleet run``."""

    enabled: bool = True
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=5080, ge=0, le=65535, description="0: any free port")
    open: bool = Field(default=False, description="accept requests without a token (loopback host only)")
    # --- request hardening (see camfleet.api.hosts and camfleet.api.limits)
    allowed_hosts: list[Annotated[str, Field(min_length=1, max_length=253, pattern=_HOST_ENTRY)]] = Field(
        default_factory=list, max_length=64,
        description="host names (optionally name:port) the API answers to besides the loopback names and "
                    "IP addresses; browsers' Origin must name one of them too (DNS-rebinding guard)",
    )
    max_ws_per_token: int = Field(default=16, ge=1, le=1000,
                                  description="WebSocket connections one token may hold at once")
    max_exports_per_token: int = Field(default=2, ge=1, le=64,
                                       description="clip exports one token may run at once (429 beyond)")
    clip_cache_mb: float = Field(default=2048.0, gt=0, le=16 * 2**20,
                                 description="exported clips kept under <data_dir>/clips, MiB (least "
                                             "recently used evicted first)")

    @model_validator(mode="after")
    def _open_only_on_loopback(self) -> ApiSettings:
        if self.open and self.host not in {"127.0.0.1", "::1", "localhost"}:
            raise PydanticCustomError(
                "api_open", "open: true is only allowed when host is a loopback address (127.0.0.1, ::1)"
            )
        return self


class ElementSpec(_Strict):
    """One step of a pipeline, written ``{name: {params}}`` (or just ``name``) in YAML.

    ``params`` stay a plain mapping here; the loader checks them with the
    element's own typed config (see :mod:`camfleet.config.elements`), and the
    element validates them again, with the same model, when the pipeline is built.
    """

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, data: Any) -> Any:
        if isinstance(data, ElementSpec):
            return data
        if isinstance(data, str):
            return {"name": data, "params": {}}
        if not isinstance(data, Mapping):
            raise PydanticCustomError(
                "pipeline_element", "a pipeline element is written {{name: {{params}}}} or just name"
            )
        if "name" in data and isinstance(data["name"], str) and set(data) <= {"name", "params"}:
            return dict(data)  # ElementSpec(name=..., params=...)
        if len(data) != 1:
            raise PydanticCustomError(
                "pipeline_element",
                "a pipeline element is a mapping with exactly one key, the element's name "
                "(found {count} keys; start each element with '- ')",
                {"count": len(data)},
            )
        ((name, params),) = data.items()
        if params is None:
            params = {}
        if not isinstance(name, str) or not isinstance(params, Mapping):
            raise PydanticCustomError(
                "pipeline_element", "the parameters of element '{name}' must be a mapping",
                {"name": str(name)},
            )
        return {"name": name, "params": dict(params)}

    @model_serializer(mode="plain")
    def _to_yaml(self) -> dict[str, Any]:
        return {self.name: copy.deepcopy(self.params)}

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The YAML shape ``{name: {params}}`` or ``name``.

        Which names and settings exist is the pipeline registry's to say
        (:func:`camfleet.pipeline.validate.config_json_schema` fills them in).
        """
        return {
            "title": "ElementSpec",
            "description": cls.__doc__.split("\n")[0] if cls.__doc__ else "",
            "anyOf": [
                {"type": "string"},
                {"type": "object", "minProperties": 1, "maxProperties": 1,
                 "additionalProperties": {"type": ["object", "null"]}},
            ],
        }


class Config(_Strict):
    """The whole configuration of a camfleet node (or cluster).

    ``cameras`` hold the merged result: each camera already includes what
    ``defaults`` gives it. Cross-section references (pipelines, models,
    detectors, element names) are checked when the model is built.
    """

    version: Literal[1] = Field(default=1, description="configuration format version")
    data_dir: str | None = Field(
        default=None,
        description="where models, recordings and the database live; relative to the config file "
        "(default ./camfleet-data)",
    )
    defaults: CameraDefaults = Field(default_factory=CameraDefaults, description="merged into every camera")
    models: dict[Name, ModelConfig] = Field(default_factory=dict, description="detection models by id")
    detectors: dict[Name, DetectorConfig] = Field(
        default_factory=dict, description="detector services by name"
    )
    pipelines: dict[Name, Annotated[list[ElementSpec], Field(min_length=1)]] = Field(
        default_factory=dict, description="named, ordered element lists"
    )
    cameras: dict[CameraName, CameraConfig] = Field(default_factory=dict)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    logging: LogSettings = Field(default_factory=LogSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    DEFAULT_DATA_DIR: ClassVar[str] = "camfleet-data"
    _base_dir: Path | None = PrivateAttr(default=None)
    _source: str | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(info.context, Mapping) and info.context.get("defaults_merged"):
            return data
        if isinstance(data, Mapping):
            return merge_defaults(data)[0]
        return data

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Config:
        if isinstance(info.context, Mapping) and info.context.get("skip_references"):
            return self
        problems = reference_problems(self.model_dump())
        if problems:
            text = "; ".join(f"{format_path(p.path)}: {p.message}" for p in problems)
            raise PydanticCustomError("config_reference", "{problems}", {"problems": text})
        return self

    @model_validator(mode="after")
    def _recordings_apart_from_data(self, info: ValidationInfo) -> Config:
        # the recordings directory is served over HTTP and swept by retention: if it held the data
        # directory (the database, secret.key, snapshots), those would be in reach of both
        base = info.context.get("base_dir") if isinstance(info.context, Mapping) else None
        problem = recordings_dir_problem(self.data_dir, self.storage.recordings_dir,
                                         Path(base) if base is not None else Path.cwd())
        if problem is not None:
            raise ValidationError.from_exception_data(type(self).__name__, [InitErrorDetails(
                type=PydanticCustomError("recordings_dir", "{problem}", {"problem": problem}),
                loc=("storage", "recordings_dir"), input=self.storage.recordings_dir,
            )])
        return self

    def camera(self, name: str) -> CameraConfig:
        """The camera called ``name``, with ``defaults`` merged in.

        Raises:
            KeyError: no such camera (the message suggests the closest name).
        """
        try:
            return self.cameras[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.cameras), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no camera {name!r}{hint}") from None

    def pipeline_of(self, camera: str) -> list[ElementSpec]:
        """The elements of ``camera``'s pipeline, in order."""
        return self.pipelines[self.camera(camera).pipeline]

    @property
    def source(self) -> str | None:
        """Where the configuration was read from (a file name), if known."""
        return self._source

    @property
    def data_path(self) -> Path:
        """``data_dir`` as a path; relative to the configuration file's directory (or the cwd)."""
        path = Path(self.data_dir or self.DEFAULT_DATA_DIR).expanduser()
        if path.is_absolute():
            return path
        return (self._base_dir or Path.cwd()) / path

    def resolve_path(self, path: str) -> Path:
        """A path from the configuration (model, labels): absolute as given, else under ``data_path``."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.data_path / p

    @property
    def database_url(self) -> str:
        """The store's SQLAlchemy URL: ``storage.database`` or SQLite at ``<data_dir>/camfleet.db``."""
        return self.storage.database or f"sqlite:///{self.data_path / 'camfleet.db'}"

    @property
    def recordings_path(self) -> Path:
        """Where recording segments are written."""
        return self.resolve_path(self.storage.recordings_dir)

    @property
    def logs_path(self) -> Path:
        """Where the main log and the per-camera logs are written."""
        return self.resolve_path(self.logging.dir)

    def model_dump_public(self) -> dict[str, Any]:
        """JSON-ready dump with every camera URL's credentials masked (for APIs and logs)."""
        data = self.model_dump(mode="json")
        for camera in data.get("cameras", {}).values():
            for source in camera.get("sources", []):
                source["url"] = mask_url(source["url"])
        if data.get("storage", {}).get("database"):
            data["storage"]["database"] = mask_url(data["storage"]["database"])
        return data


def recordings_dir_problem(data_dir: str | None, recordings_dir: str, base: Path | None = None) -> str | None:
    """Why ``storage.recordings_dir`` may not be used with ``data_dir``, or None when it may.

    Refused: the filesystem root, and any directory that contains the data
    directory (``.``, ``..``, a parent of an absolute ``data_dir``). A relative
    ``data_dir`` is resolved against ``base`` when given; without it only what
    can be decided without knowing the configuration file's folder is checked.
    """
    rec = Path(os.path.normpath(Path(recordings_dir).expanduser()))
    if rec.is_absolute() and rec == Path(rec.anchor):
        return "the recordings directory must not be the filesystem root '/'"
    if not rec.is_absolute():
        if all(part == ".." for part in rec.parts) or rec == Path("."):
            return (f"the recordings directory {recordings_dir!r} contains the data directory "
                    "(the database and keys would be served and swept): choose a folder inside or beside it")
        return None  # under data_dir, or beside it ("../footage"): never a parent of it
    data = Path(data_dir or Config.DEFAULT_DATA_DIR).expanduser()
    if not data.is_absolute():
        if base is None:
            return None
        data = base / data
    data = Path(os.path.normpath(data))
    if data == rec or rec in data.parents:
        return (f"the recordings directory {recordings_dir!r} contains the data directory {str(data)!r} "
                "(the database and keys would be served and swept): choose a folder inside or beside it")
    return None


# --------------------------------------------------------------------------- merging and references


def _deep_merge(
    base: Mapping[str, Any], over: Mapping[str, Any], base_path: ConfigPath, out_path: ConfigPath,
    origins: dict[ConfigPath, ConfigPath],
) -> dict[str, Any]:
    result = dict(over)
    for key, value in base.items():
        mine = over.get(key)
        if key not in over or mine is None:
            result[key] = copy.deepcopy(value)
            origins[(*out_path, key)] = (*base_path, key)
        elif isinstance(value, Mapping) and isinstance(mine, Mapping):
            result[key] = _deep_merge(value, mine, (*base_path, key), (*out_path, key), origins)
    return result


def merge_defaults(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[ConfigPath, ConfigPath]]:
    """``data`` with ``defaults`` deep-merged into every camera, and where merged values came from.

    Mappings merge key by key; anything else (lists included) is replaced by
    the camera's value; a camera's ``null`` takes the default. The second
    value maps each merged-in location (``("cameras", "door", "detect")``) to
    its origin (``("defaults", "detect")``). Malformed input is left as it is
    for validation to report.
    """
    out = dict(data)
    origins: dict[ConfigPath, ConfigPath] = {}
    defaults, cameras = data.get("defaults"), data.get("cameras")
    if not isinstance(defaults, Mapping) or not defaults or not isinstance(cameras, Mapping):
        return out, origins
    merged: dict[Any, Any] = {}
    for name, camera in cameras.items():
        if isinstance(camera, Mapping):
            merged[name] = _deep_merge(defaults, camera, ("defaults",), ("cameras", name), origins)
        elif camera is None:
            merged[name] = _deep_merge(defaults, {}, ("defaults",), ("cameras", name), origins)
        else:
            merged[name] = camera
    out["cameras"] = merged
    return out, origins


class Problem(NamedTuple):
    """A cross-reference problem found by :func:`reference_problems`.

    ``at_key`` says the problem is the mapping key at ``path`` itself (an
    unknown element name), not its value.
    """

    path: ConfigPath
    message: str
    suggestion: str | None = None
    at_key: bool = False


def _suggest(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def _dangling(kind: str, name: str, section: str, choices: list[str]) -> tuple[str, str | None]:
    if not choices:
        return f"{kind} {name!r} is not defined: '{section}' is empty", None
    return f"{kind} {name!r} is not defined under '{section}'", _suggest(name, choices)


def reference_problems(
    data: Mapping[str, Any], elements: Callable[[], set[str]] | None = None
) -> list[Problem]:
    """Cross-section checks on configuration data (merged, as plain mappings).

    * every pipeline element name is one of ``elements()`` (the pipeline
      registry's names; not checked when ``elements`` is None);
    * a ``detect`` element's ``model`` names a model and its ``detector`` a
      detector, and the two use the same runtime;
    * every camera's ``pipeline`` names a pipeline.

    Values of the wrong type are skipped: validation reports those.
    """
    problems: list[Problem] = []
    models = data.get("models")
    models = models if isinstance(models, Mapping) else {}
    detectors = data.get("detectors")
    detectors = detectors if isinstance(detectors, Mapping) else {}
    pipelines = data.get("pipelines")
    pipelines = pipelines if isinstance(pipelines, Mapping) else {}
    cameras = data.get("cameras")
    cameras = cameras if isinstance(cameras, Mapping) else {}
    known: set[str] | None = None

    for pname, elements_ in pipelines.items():
        if not isinstance(elements_, list):
            continue
        for i, entry in enumerate(elements_):
            name: Any
            params: Any
            at: ConfigPath
            if isinstance(entry, str):
                name, params, at = entry, {}, (i,)
            elif isinstance(entry, Mapping) and len(entry) == 1:
                ((name, params),) = entry.items()
                at = (i, name)
            else:
                continue
            if not isinstance(name, str):
                continue
            here: ConfigPath = ("pipelines", pname, *at)
            if elements is not None:
                known = known if known is not None else elements()
            if known is not None and name not in known:
                hint = _suggest(name, sorted(known))
                problems.append(Problem(
                    here, f"unknown pipeline element {name!r}",
                    hint or f"known elements: {', '.join(sorted(known))}", at_key=len(at) == 2,
                ))
                continue
            if name != "detect" or not isinstance(params, Mapping):
                continue
            model_id, detector_id = params.get("model"), params.get("detector")
            model = detector = None
            if isinstance(model_id, str):
                model = models.get(model_id)
                if model is None:
                    message, hint = _dangling("model", model_id, "models", [str(k) for k in models])
                    problems.append(Problem((*here, "model"), message, hint))
            if isinstance(detector_id, str):
                detector = detectors.get(detector_id)
                if detector is None:
                    names = [str(k) for k in detectors]
                    message, hint = _dangling("detector", detector_id, "detectors", names)
                    problems.append(Problem((*here, "detector"), message, hint))
            if isinstance(model, Mapping) and isinstance(detector, Mapping):
                mr, dr = model.get("runtime"), detector.get("runtime")
                if isinstance(mr, str) and isinstance(dr, str) and mr != dr:
                    problems.append(Problem(
                        (*here, "detector"),
                        f"detector {detector_id!r} runs {dr} but model {model_id!r} needs {mr}",
                    ))

    for cname, camera in cameras.items():
        if not isinstance(camera, Mapping):
            continue
        pipeline = camera.get("pipeline")
        if isinstance(pipeline, str) and pipeline not in pipelines:
            message, hint = _dangling("pipeline", pipeline, "pipelines", [str(k) for k in pipelines])
            problems.append(Problem(("cameras", cname, "pipeline"), message, hint))
    return problems


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_path(path: ConfigPath) -> str:
    """``("cameras", "door", "sources", 0, "url")`` as ``cameras.door.sources[0].url``.

    Keys that are not plain names are quoted: ``zones."front yard"``.
    """
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            text = seg if _PLAIN_KEY.fullmatch(seg) else '"' + seg.replace('"', '\\"') + '"'
            out += f".{text}" if out else text
    return out
