"""The TFLite runtime: SSD models with the ``TFLite_Detection_PostProcess`` op, run by ai-edge-litert."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .geometry import FloatArray, Image8, fit_image
from .models import ModelSpec, verify_model
from .runtime_base import Runtime
from .types import Detection


class TFLiteRuntime(Runtime):
    """A TFLite SSD model with the ``TFLite_Detection_PostProcess`` op, run by ai-edge-litert.

    Outputs (checked on the default model): boxes ``[1, K, 4]`` as normalised
    ``(ymin, xmin, ymax, xmax)``, classes ``[1, K]`` (ids of the labels file),
    scores ``[1, K]``, count ``[1]``. uint8/int8 inputs get raw pixels (the
    quantization holds the normalisation). A model with a fixed batch of 1 is
    run once per image; one with a dynamic batch dimension once per batch.
    """

    def __init__(self, spec: ModelSpec, threads: int | None = None, score_threshold: float | None = None):
        if spec.runtime != "tflite":
            raise ValueError(f"model {spec.id!r} is for {spec.runtime}, not tflite")
        verify_model(spec)
        super().__init__(spec, score_threshold)
        from ai_edge_litert.interpreter import Interpreter  # type: ignore[import-untyped]  # noqa: PLC0415

        try:
            self._interp: Any = Interpreter(model_path=str(spec.path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ValueError(f"model {spec.id!r}: {spec.path} is not a loadable TFLite model: {exc}") from exc
        inputs = self._interp.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"model {spec.id!r}: expected 1 input, the model has {len(inputs)}")
        inp = inputs[0]
        shape = [int(v) for v in inp["shape"]]
        sig = [int(v) for v in inp.get("shape_signature", inp["shape"])]
        if len(shape) != 4 or shape[3] != 3:
            raise ValueError(f"model {spec.id!r}: expected an NHWC RGB input, got shape {shape}")
        model_size = (shape[2], shape[1])
        if spec.input_size is not None and spec.input_size != model_size:
            raise ValueError(
                f"model {spec.id!r}: spec input_size {spec.input_size} but the model takes {model_size}"
            )
        self.input_size = model_size
        self._in_index = int(inp["index"])
        self._in_dtype = np.dtype(inp["dtype"])
        self._dynamic_batch = sig[0] == -1
        self._batch = 1
        self._out = self._map_outputs(self._interp.get_output_details())

    @property
    def runs_batches(self) -> bool:
        """True for a model with a dynamic batch dimension (the whole batch runs in one call)."""
        return self._dynamic_batch

    def _map_outputs(self, details: list[dict[str, Any]]) -> dict[str, int]:
        """Find boxes/classes/scores/count among the outputs (by the post-process op's names, else shapes)."""
        where = f"model {self.spec.id!r}"
        if len(details) != 4:
            raise ValueError(f"{where}: expected 4 SSD post-process outputs, the model has {len(details)}")
        by_name = {str(d["name"]): int(d["index"]) for d in details}
        base = min(by_name, key=len)
        names = [base, base + ":1", base + ":2", base + ":3"]
        if all(n in by_name for n in names):
            keys = ("boxes", "classes", "scores", "count")
            return {k: by_name[n] for k, n in zip(keys, names, strict=True)}
        out: dict[str, int] = {}
        pairs: list[int] = []
        for d in details:
            rank = len(d["shape"])
            if rank == 3 and int(d["shape"][-1]) == 4:
                out["boxes"] = int(d["index"])
            elif rank == 1:
                out["count"] = int(d["index"])
            else:
                pairs.append(int(d["index"]))
        if "boxes" not in out or "count" not in out or len(pairs) != 2:
            raise ValueError(f"{where}: outputs {[(d['name'], list(d['shape'])) for d in details]} are not "
                             f"SSD post-process outputs (boxes, classes, scores, count)")
        out["classes"], out["scores"] = pairs
        return out

    def _run(self, x: npt.NDArray[Any]) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        if self._dynamic_batch and x.shape[0] != self._batch:
            self._interp.resize_tensor_input(self._in_index, list(x.shape))
            self._interp.allocate_tensors()
            self._batch = x.shape[0]
        self._interp.set_tensor(self._in_index, x)
        self._interp.invoke()
        get = self._interp.get_tensor
        return (
            np.asarray(get(self._out["boxes"]), dtype=np.float32),
            np.asarray(get(self._out["classes"]), dtype=np.float32),
            np.asarray(get(self._out["scores"]), dtype=np.float32),
            np.asarray(get(self._out["count"]), dtype=np.float32).reshape(-1),
        )

    def _infer(self, images: list[Image8]) -> list[list[Detection]]:
        fitted = [fit_image(img, self.input_size, self.spec.resize) for img in images]
        idx = list(range(len(images)))
        chunks = [idx] if self._dynamic_batch else [[i] for i in idx]
        results: list[list[Detection]] = [[] for _ in images]
        in_w, in_h = self.input_size
        for chunk in chunks:
            x = self._to_tensor([fitted[i][0] for i in chunk], self._in_dtype)
            boxes, classes, scores, count = self._run(x)
            for row, i in enumerate(chunk):
                n = int(count[row]) if row < count.shape[0] else int(count[0])
                n = min(n, scores.shape[1])
                s = scores[row, :n]
                sel = np.flatnonzero(s >= self.score_threshold)
                sel = sel[np.argsort(-s[sel], kind="stable")]
                b = boxes[row, sel]  # ymin, xmin, ymax, xmax, normalised
                px = np.stack([b[:, 1] * in_w, b[:, 0] * in_h, b[:, 3] * in_w, b[:, 2] * in_h], axis=1)
                results[i] = self._detections(
                    px.astype(np.float32), s[sel], classes[row, sel].round().astype(np.intp), fitted[i][1]
                )
        return results

    def _release(self) -> None:
        self._interp = None

