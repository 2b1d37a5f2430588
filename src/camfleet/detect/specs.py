"""The :class:`~camfleet.detect.models.ModelSpec` of a model named in a node configuration.

Kept beside :mod:`camfleet.detect.models` (which knows nothing of the
configuration file) so that the configuration-to-model mapping has one home.
"""

from __future__ import annotations

from pathlib import Path

from camfleet.config import Config

from .models import DEFAULT_MODEL_FILE, ModelSpec, default_model_spec


def model_spec(config: Config, model_id: str) -> ModelSpec:
    """The :class:`ModelSpec` of model ``model_id`` of ``config`` (paths resolved against the config).

    The default model file with the TFLite runtime gets the built-in spec, so
    its sha256 is checked when it loads.
    """
    m = config.models[model_id]
    path = config.resolve_path(m.path)
    if path.name == DEFAULT_MODEL_FILE and m.runtime == "tflite":
        return default_model_spec(path.parent)
    labels: Path | tuple[str, ...] | None
    if isinstance(m.labels, list):
        labels = tuple(m.labels)
    else:
        labels = config.resolve_path(m.labels) if m.labels else None
    return ModelSpec(
        id=model_id, path=path, runtime=m.runtime, input_size=(m.input.width, m.input.height),
        labels=labels, output="ssd_postprocess" if m.runtime == "tflite" else "yolov8",
    )
