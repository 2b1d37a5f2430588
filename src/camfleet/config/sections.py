"""The node-wide sections: models, detectors, pipeline elements, runtime, logs, storage, API, outbox, compat.

Each class here is one top-level section of :class:`~camfleet.config.model.Config`
(or an entry of one: :class:`ModelConfig` under ``models``,
:class:`DetectorConfig` under ``detectors``, :class:`ElementSpec` in a
``pipelines`` list); none of them refers to another section.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, GetJsonSchemaHandler, model_serializer, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from .base import Name, PositiveSize, Runtime, _Strict

__all__ = [
    "ApiSettings",
    "CompatSettings",
    "DetectorConfig",
    "ElementSpec",
    "InputSize",
    "LogSettings",
    "ModelConfig",
    "OutboxSettings",
    "RuntimeSettings",
    "StorageSettings",
]


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
    workers: int | None = Field(
        default=None, ge=1, le=64,
        description="inference workers per process, each with its own runtime (default: one per core, "
                    "divided among the processes)")
    threads: int = Field(default=1, ge=1, le=256, description="inference threads of each worker")
    max_running: int | None = Field(
        default=None, ge=1, le=64,
        description="inferences run at once per process, over all its workers (default: one per core, "
                    "divided among the processes); workers beyond it keep their runtimes and take turns")
    max_batch: int = Field(default=8, ge=1, le=1024,
                           description="most images run together (models with a batch axis)")
    max_wait_ms: float = Field(default=10.0, ge=0, le=10_000,
                               description="longest wait to fill a batch (models with a batch axis)")


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


class CompatSettings(_Strict):
    """Other systems' interfaces camfleet can speak besides its own (each opt-in)."""

    frigate: bool = Field(
        default=False,
        description="serve Frigate's HTTP API shapes under /frigate/api/... (for Home Assistant's Frigate "
                    "integration: point it at http://HOST:PORT/frigate); same tokens and roles as the API",
    )


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
