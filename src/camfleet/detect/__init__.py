"""detect: detection models and the runtimes that run them.

* :class:`Detection` is what a detector returns (label, score, box in the
  image's pixels).
* :class:`ModelSpec` describes a model; :func:`default_model_spec` is SSD
  MobileNet v2 COCO quantized (TFLite), fetched by :func:`fetch_default_model`
  (``camfleet models fetch``) into :func:`models_dir`.
* :func:`load_runtime` loads a spec into a :class:`Runtime`
  (:class:`TFLiteRuntime` or :class:`OnnxRuntime`) whose ``infer(batch)``
  takes RGB uint8 images of any size.
"""

from .models import (
    DEFAULT_MODEL_ID,
    FetchResult,
    FileStatus,
    ModelCorrupt,
    ModelError,
    ModelFetchError,
    ModelMissing,
    ModelSpec,
    data_dir,
    default_model_spec,
    default_model_status,
    fetch_default_model,
    load_labels,
    models_dir,
    parse_labels,
    verify_model,
)
from .runtime import (
    Geometry,
    OnnxRuntime,
    Runtime,
    TFLiteRuntime,
    batched_nms,
    decode_yolo,
    fit_image,
    load_runtime,
    nms,
)
from .types import Box, Detection, box_area, box_iou

__all__ = [
    "DEFAULT_MODEL_ID",
    "Box",
    "Detection",
    "FetchResult",
    "FileStatus",
    "Geometry",
    "ModelCorrupt",
    "ModelError",
    "ModelFetchError",
    "ModelMissing",
    "ModelSpec",
    "OnnxRuntime",
    "Runtime",
    "TFLiteRuntime",
    "batched_nms",
    "box_area",
    "box_iou",
    "data_dir",
    "decode_yolo",
    "default_model_spec",
    "default_model_status",
    "fetch_default_model",
    "fit_image",
    "load_labels",
    "load_runtime",
    "models_dir",
    "nms",
    "parse_labels",
    "verify_model",
]
