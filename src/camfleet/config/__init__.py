"""The camfleet configuration: one YAML file, validated strictly, with errors that say where.

>>> from camfleet.config import load_config_text
>>> cfg = load_config_text('''
... models:
...   ssd: {path: models/ssd.tflite, runtime: tflite, input: {width: 300, height: 300}}
... detectors: {cpu: {runtime: tflite}}
... pipelines: {default: [motion: {}, detect: {model: ssd, detector: cpu}]}
... defaults: {pipeline: default, detect: {fps: 5}}
... cameras: {lab: {sources: [{url: "synthetic://lab", roles: [detect]}]}}
... ''')
>>> cfg.camera("lab").detect.fps, cfg.camera("lab").pipeline
(5.0, 'default')

* :func:`load_config` / :func:`load_config_text` read and validate, raising
  :class:`ConfigError` with every :class:`ConfigIssue` (path, line, column,
  message, suggestion).
* :class:`Config` and its sections are the typed result;
  :meth:`Config.camera` gives a camera with ``defaults`` merged in.
* :func:`config_json_schema` exports the JSON Schema.
* :class:`ElementCatalog` is what the loader and the schema need to check
  element names and settings (the element list is the pipeline registry's;
  without a catalog, names are not checked); the registry provides it, and
  :mod:`camfleet.pipeline.validate` is the loader with it filled in.
* Configuration sources (:mod:`camfleet.config.sources`): :class:`FileSource`,
  :class:`FixedSource`, and :class:`OverlaySource`, which lays the cameras
  applied through the API (kept in the store, a :class:`CameraOverlay`) over
  another source's; :class:`ConfigFileWatcher` says when a file's content changed.
"""

from .elements import ElementCatalog
from .load import ConfigError, ConfigIssue, element_issues, load_config, load_config_text
from .model import (
    ApiSettings,
    CameraConfig,
    CameraDefaults,
    Config,
    DetectorConfig,
    DetectSettings,
    ElementSpec,
    InputSize,
    LogSettings,
    ModelConfig,
    RecordSettings,
    RetainDays,
    RuntimeSettings,
    SourceConfig,
    StorageSettings,
    ZoneConfig,
)
from .schema import config_json_schema, config_json_schema_text
from .sources import (
    CameraOverlay,
    ConfigSource,
    FileSource,
    FixedSource,
    OverlaySource,
    OverlayUnavailable,
    overlay_cameras,
)
from .watch import ConfigFileWatcher

__all__ = [
    "ApiSettings",
    "LogSettings",
    "RecordSettings",
    "RetainDays",
    "RuntimeSettings",
    "StorageSettings",
    "CameraConfig",
    "CameraDefaults",
    "CameraOverlay",
    "Config",
    "ConfigFileWatcher",
    "ConfigSource",
    "ConfigError",
    "ConfigIssue",
    "DetectSettings",
    "DetectorConfig",
    "ElementCatalog",
    "ElementSpec",
    "FileSource",
    "FixedSource",
    "InputSize",
    "ModelConfig",
    "OverlaySource",
    "OverlayUnavailable",
    "SourceConfig",
    "ZoneConfig",
    "config_json_schema",
    "config_json_schema_text",
    "element_issues",
    "load_config",
    "load_config_text",
    "overlay_cameras",
]
