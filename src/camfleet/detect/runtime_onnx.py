"""The ONNX runtime: YOLO-style models run by onnxruntime, decoded and filtered by class-wise NMS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .decode import batched_nms, decode_yolo
from .geometry import Image8, fit_image
from .models import ModelSpec, verify_model
from .runtime_base import Runtime
from .types import Detection


class OnnxRuntime(Runtime):
    """A YOLO-style ONNX model run by onnxruntime (outputs decoded by :func:`decode_yolo`, class-wise NMS).

    The first input is the image (``spec.layout`` NCHW or NHWC; float inputs
    normalised by ``spec.mean``/``spec.std``); the first output is decoded.
    With a symbolic batch dimension the whole batch runs in one call; a fixed
    batch of B runs in chunks of B (the last one padded).
    """

    def __init__(
        self,
        spec: ModelSpec,
        threads: int | None = None,
        score_threshold: float | None = None,
        providers: Sequence[str] | None = None,
    ):
        if spec.runtime != "onnx":
            raise ValueError(f"model {spec.id!r} is for {spec.runtime}, not onnx")
        verify_model(spec)
        super().__init__(spec, score_threshold)
        import onnxruntime as ort  # type: ignore[import-untyped]  # noqa: PLC0415

        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self._sess: Any = ort.InferenceSession(
                str(spec.path), sess_options=opts, providers=list(providers or ["CPUExecutionProvider"])
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"model {spec.id!r}: {spec.path} is not a loadable ONNX model: {exc}") from exc
        inp = self._sess.get_inputs()[0]
        self._in_name = str(inp.name)
        self._out_name = str(self._sess.get_outputs()[0].name)
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ValueError(f"model {spec.id!r}: expected a 4-D image input, got {shape}")
        hw = (shape[2], shape[3]) if spec.layout == "nchw" else (shape[1], shape[2])
        ch = shape[1] if spec.layout == "nchw" else shape[3]
        if isinstance(ch, int) and ch != 3:
            raise ValueError(f"model {spec.id!r}: input {shape} has {ch} channels ({spec.layout}), not 3")
        if all(isinstance(v, int) and v > 0 for v in hw):
            model_size = (int(hw[1]), int(hw[0]))
            if spec.input_size is not None and spec.input_size != model_size:
                raise ValueError(
                    f"model {spec.id!r}: spec input_size {spec.input_size} but the model takes {model_size}"
                )
            self.input_size = model_size
        elif spec.input_size is None:
            raise ValueError(f"model {spec.id!r}: input {shape} has symbolic height/width; set input_size")
        self._fixed_batch: int | None = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        types = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                 "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
        if inp.type not in types:
            raise ValueError(f"model {spec.id!r}: unsupported input type {inp.type}")
        self._in_dtype = np.dtype(types[inp.type])
        self._num_classes = (max(self.labels) + 1) if self.labels else None

    @property
    def dynamic_batch(self) -> bool:
        """True when the model's batch dimension is symbolic (a whole batch runs in one call)."""
        return self._fixed_batch is None

    @property
    def runs_batches(self) -> bool:
        """True with a symbolic batch dimension or a fixed batch above 1 (several images per call)."""
        return self._fixed_batch is None or self._fixed_batch > 1

    def _infer(self, images: list[Image8]) -> list[list[Detection]]:
        fitted = [fit_image(img, self.input_size, self.spec.resize) for img in images]
        step = len(images) if self._fixed_batch is None else self._fixed_batch
        results: list[list[Detection]] = []
        for start in range(0, len(images), step):
            part = [f[0] for f in fitted[start:start + step]]
            n = len(part)
            if self._fixed_batch is not None and n < step:
                part += [np.zeros_like(part[0])] * (step - n)
            x = self._to_tensor(part, self._in_dtype)
            out = np.asarray(self._sess.run([self._out_name], {self._in_name: x})[0], dtype=np.float32)
            if out.ndim == 2:
                out = out[None]
            if out.ndim != 3 or out.shape[0] != len(part):
                raise ValueError(
                    f"model {self.spec.id!r}: output shape {out.shape} is not [batch={len(part)}, C, anchors]"
                )
            for row in range(n):
                boxes, scores, ids = decode_yolo(out[row], self.spec.output, self.score_threshold,
                                                 self._num_classes)
                keep = batched_nms(boxes, scores, ids, self.spec.iou_threshold)
                results.append(self._detections(boxes[keep], scores[keep], ids[keep], fitted[start + row][1]))
        return results

    def _release(self) -> None:
        self._sess = None

