"""Detection runtimes: run a model on a batch of RGB images and return :class:`Detection` lists.

* :class:`TFLiteRuntime` (ai-edge-litert) decodes the SSD ``TFLite_Detection_PostProcess``
  outputs (boxes, classes, scores, count).
* :class:`OnnxRuntime` (onnxruntime) decodes YOLO-style outputs (``[N, 4 + nc, anchors]``,
  or transposed, or YOLOv5 with objectness), thresholds them and runs class-wise NMS;
  a model with a symbolic batch dimension runs the whole batch in one call.
* :func:`load_runtime` picks one from a :class:`~camfleet.detect.models.ModelSpec`.

Every runtime takes images of any size, fits them to the model's input
(stretch or letterbox, as the spec says) and maps the boxes back to each
image's own pixels.

Layout: :mod:`~camfleet.detect.geometry` (fitting, :class:`Geometry`),
:mod:`~camfleet.detect.decode` (YOLO decoding, NMS), :mod:`~camfleet.detect.runtime_base`
(:class:`Runtime`), :mod:`~camfleet.detect.runtime_tflite` and
:mod:`~camfleet.detect.runtime_onnx`. This module picks a runtime and re-exports
those names, so ``from camfleet.detect.runtime import ...`` keeps working.
"""

from __future__ import annotations

from .decode import batched_nms, decode_yolo, nms
from .geometry import LETTERBOX_FILL, FloatArray, Geometry, Image8, IntArray, fit_image
from .models import ModelSpec
from .runtime_base import Runtime
from .runtime_onnx import OnnxRuntime
from .runtime_tflite import TFLiteRuntime

__all__ = [
    "LETTERBOX_FILL",
    "FloatArray",
    "Geometry",
    "Image8",
    "IntArray",
    "OnnxRuntime",
    "Runtime",
    "TFLiteRuntime",
    "batched_nms",
    "decode_yolo",
    "fit_image",
    "load_runtime",
    "nms",
]


def load_runtime(
    spec: ModelSpec,
    threads: int | None = None,
    score_threshold: float | None = None,
) -> Runtime:
    """Load ``spec`` into the runtime its ``runtime`` field names.

    ``threads``: CPU threads for the runtime (``None``: the runtime's default).
    Raises :class:`~camfleet.detect.models.ModelMissing` (with what to do)
    when the model file is missing or has the wrong sha256.
    """
    if spec.runtime == "tflite":
        return TFLiteRuntime(spec, threads=threads, score_threshold=score_threshold)
    if spec.runtime == "onnx":
        return OnnxRuntime(spec, threads=threads, score_threshold=score_threshold)
    raise ValueError(f"model {spec.id!r}: unknown runtime {spec.runtime!r}")
