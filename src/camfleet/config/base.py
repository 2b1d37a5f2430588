"""What every configuration model shares: the strict base model and the value types.

:class:`_Strict` is the base of every section (strict types, unknown keys
rejected, immutable); the annotated types here (:data:`Name`,
:data:`CameraName`, :data:`Polygon`, ...) carry the field constraints used by
more than one section. :data:`ConfigPath` is how locations in the
configuration data are written throughout :mod:`camfleet.config`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

__all__ = [
    "CAMERA_NAME_PATTERN",
    "DEFAULT_DATA_DIR",
    "CameraName",
    "ConfigPath",
    "Coordinate",
    "EvenSize",
    "Name",
    "Point",
    "Polygon",
    "PositiveSize",
    "Role",
    "Runtime",
]

CAMERA_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,63}$"
"""Camera names become ring keys: 1-63 letters, digits, ``_`` or ``-``."""

_CAMERA_NAME_RE = re.compile(CAMERA_NAME_PATTERN)

ConfigPath = tuple[str | int, ...]
"""A location in the configuration data: mapping keys and list indexes."""

DEFAULT_DATA_DIR = "camfleet-data"
"""``data_dir`` when the configuration gives none (relative to the configuration file)."""


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
