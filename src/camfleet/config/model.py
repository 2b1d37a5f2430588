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
:mod:`camfleet.pipeline.validate` does. What is checked across sections is
listed in :func:`~camfleet.config.references.reference_problems`.

This module holds the root :class:`Config`; the rest lives beside it, one job
per module, and every public name is re-exported here (``__all__``):

* :mod:`camfleet.config.base`: the strict base model, the shared value types
  (names, sizes, polygons) and :data:`ConfigPath`;
* :mod:`camfleet.config.cameras`: ``cameras`` and ``defaults`` (streams,
  TLS, detect settings, zones, recording);
* :mod:`camfleet.config.sections`: the node-wide sections (models,
  detectors, pipeline elements, runtime, logging, storage, API, outbox);
* :mod:`camfleet.config.webhooks`: ``webhooks`` (receivers, filters, signing secret, SSRF flags);
* :mod:`camfleet.config.references`: checks and transforms on the plain data
  (merging ``defaults``, cross-section references, the recordings directory,
  path formatting).

Files are read with :mod:`camfleet.config.load`, which adds ``${ENV}``
substitution and errors that carry line and column.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, ValidationError, ValidationInfo, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from camfleet.redact import MASK, mask_url

from .base import CAMERA_NAME_PATTERN, CameraName, ConfigPath, Name, _Strict
from .base import DEFAULT_DATA_DIR as _DEFAULT_DATA_DIR
from .cameras import (
    CameraConfig,
    CameraDefaults,
    DetectSettings,
    MotionSettings,
    RecordSettings,
    RetainDays,
    SnapshotSettings,
    SourceConfig,
    TlsSettings,
    ZoneConfig,
)
from .mqtt import MqttSettings, MqttTls
from .references import Problem, format_path, merge_defaults, recordings_dir_problem, reference_problems
from .sections import (
    ApiSettings,
    CompatSettings,
    DetectorConfig,
    ElementSpec,
    InputSize,
    LogSettings,
    ModelConfig,
    OutboxSettings,
    RuntimeSettings,
    StorageSettings,
)
from .webhooks import WebhookConfig, WebhookList

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
    "MotionSettings",
    "MqttSettings",
    "MqttTls",
    "SnapshotSettings",
    "ApiSettings",
    "LogSettings",
    "Problem",
    "RecordSettings",
    "RetainDays",
    "RuntimeSettings",
    "SourceConfig",
    "StorageSettings",
    "TlsSettings",
    "WebhookConfig",
    "ZoneConfig",
    "format_path",
    "merge_defaults",
    "reference_problems",
]


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
    webhooks: WebhookList = Field(default_factory=list, description="HTTP receivers of the node's events")
    compat: CompatSettings = Field(default_factory=CompatSettings, description="other systems' APIs (opt-in)")
    mqtt: MqttSettings | None = Field(default=None, description="publish events and state to an MQTT "
                                                                "broker as Frigate does (docs/mqtt.md)")

    DEFAULT_DATA_DIR: ClassVar[str] = _DEFAULT_DATA_DIR
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
        if (data.get("mqtt") or {}).get("password"):
            data["mqtt"]["password"] = MASK
        if data.get("storage", {}).get("database"):
            data["storage"]["database"] = mask_url(data["storage"]["database"])
        for hook in data.get("webhooks", []):
            hook.update(url=mask_url(hook["url"]), secret=MASK, headers=dict.fromkeys(hook["headers"], MASK))
        return data
