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
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from .models import ModelSpec, OutputKind, ResizeMode, load_labels, verify_model
from .types import Box, Detection

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
Image8 = npt.NDArray[np.uint8]

LETTERBOX_FILL = 114
"""Grey level of the letterbox padding (the YOLO convention)."""


# --- geometry -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Geometry:
    """How an image was fitted to the model input: ``input = image * scale + pad`` per axis.

    ``width``/``height`` are the original image's size in pixels.
    """

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float
    width: int
    height: int

    def to_image(self, boxes: FloatArray) -> FloatArray:
        """Map ``[N, 4]`` boxes ``(x0, y0, x1, y1)`` from model-input pixels to image pixels (clipped)."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0.0, float(self.width), out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, float(self.height), out=out[:, 1::2])
        return out


def fit_image(image: Image8, size: tuple[int, int], mode: ResizeMode) -> tuple[Image8, Geometry]:
    """Fit an ``HxWx3`` uint8 image to ``size`` = (width, height) by ``"stretch"`` or ``"letterbox"``.

    Resampling is bilinear.

    Returns the fitted ``size[1] x size[0] x 3`` image and the :class:`Geometry` to map boxes back.
    """
    in_w, in_h = size
    h, w = image.shape[:2]
    if mode == "stretch":
        geo = Geometry(in_w / w, in_h / h, 0.0, 0.0, w, h)
        if (w, h) == (in_w, in_h):
            return image, geo
        return _resize(image, in_w, in_h), geo
    s = min(in_w / w, in_h / h)
    nw, nh = max(1, min(in_w, round(w * s))), max(1, min(in_h, round(h * s)))
    px, py = (in_w - nw) // 2, (in_h - nh) // 2
    geo = Geometry(nw / w, nh / h, float(px), float(py), w, h)
    if (nw, nh) == (in_w, in_h):
        return (image if (w, h) == (in_w, in_h) else _resize(image, in_w, in_h)), geo
    canvas = np.full((in_h, in_w, 3), LETTERBOX_FILL, dtype=np.uint8)
    canvas[py:py + nh, px:px + nw] = image if (w, h) == (nw, nh) else _resize(image, nw, nh)
    return canvas, geo


def _resize(image: Image8, width: int, height: int) -> Image8:
    pil = Image.fromarray(np.ascontiguousarray(image))
    out = pil.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)


# --- NMS and YOLO decoding (pure functions) -----------------------------------------------------


def nms(boxes: npt.ArrayLike, scores: npt.ArrayLike, iou_threshold: float) -> IntArray:
    """Greedy non-maximum suppression.

    ``boxes`` is ``[N, 4]`` ``(x0, y0, x1, y1)``, ``scores`` is ``[N]``. A box is
    dropped when its IoU with a higher-scoring kept box is above
    ``iou_threshold``. Returns the kept indices, highest score first.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if b.shape[0] != s.shape[0]:
        raise ValueError(f"nms: {b.shape[0]} boxes but {s.shape[0]} scores")
    x0, y0, x1, y1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = np.maximum(0.0, x1 - x0) * np.maximum(0.0, y1 - y0)
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        ih = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = iw * ih
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def batched_nms(
    boxes: npt.ArrayLike, scores: npt.ArrayLike, class_ids: npt.ArrayLike, iou_threshold: float
) -> IntArray:
    """Class-wise NMS: boxes only suppress boxes of the same class.

    Returns the kept indices, highest score first.
    """
    c = np.asarray(class_ids).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    kept: list[IntArray] = []
    for cls in np.unique(c):
        idx = np.flatnonzero(c == cls)
        kept.append(idx[nms(b[idx], s[idx], iou_threshold)])
    if not kept:
        return np.zeros(0, dtype=np.intp)
    allk = np.concatenate(kept)
    return np.asarray(allk[np.argsort(-s[allk], kind="stable")], dtype=np.intp)


def decode_yolo(
    output: npt.ArrayLike,
    kind: OutputKind,
    score_threshold: float,
    num_classes: int | None = None,
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Decode one image's YOLO output into boxes ``(x0, y0, x1, y1)``, scores and class ids (before NMS).

    ``output`` is 2-D: ``[4 + nc, anchors]`` (YOLOv8 as exported) or
    ``[anchors, 4 + nc]`` (transposed); for ``kind="yolov5"`` there is an
    objectness column after the box (``5 + nc``) and score = objectness x
    class score. Boxes are ``cx, cy, w, h`` in model-input pixels. The channel
    axis is the one of size ``4 + num_classes`` (``5 + …``) when exactly one
    axis has that size, else the smaller axis. Each anchor keeps its best class;
    anchors scoring below ``score_threshold`` are dropped.
    """
    a = np.asarray(output, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"YOLO output must be 2-D per image, got shape {a.shape}")
    extra = 5 if kind == "yolov5" else 4
    if kind not in ("yolov8", "yolov5"):
        raise ValueError(f"decode_yolo: unsupported output kind {kind!r}")
    fits = [num_classes is not None and d == extra + num_classes for d in a.shape]
    channels_first = fits[0] if fits[0] != fits[1] else a.shape[0] <= a.shape[1]
    pred = a.T if channels_first else a
    if pred.shape[1] <= extra:
        raise ValueError(
            f"YOLO output of shape {a.shape} has no class scores: {kind} needs {extra} + num_classes channels"
        )
    cls_scores = pred[:, extra:]
    if kind == "yolov5":
        cls_scores = cls_scores * pred[:, 4:5]
    ids = np.argmax(cls_scores, axis=1)
    scores = cls_scores[np.arange(pred.shape[0]), ids]
    sel = scores >= score_threshold
    xywh = pred[sel, :4]
    boxes = np.empty_like(xywh)
    boxes[:, 0] = xywh[:, 0] - xywh[:, 2] / 2
    boxes[:, 1] = xywh[:, 1] - xywh[:, 3] / 2
    boxes[:, 2] = xywh[:, 0] + xywh[:, 2] / 2
    boxes[:, 3] = xywh[:, 1] + xywh[:, 3] / 2
    return boxes, scores[sel].astype(np.float32), ids[sel].astype(np.intp)


# --- runtimes -----------------------------------------------------------------------------------


def _check_images(batch: Sequence[Any]) -> list[Image8]:
    out: list[Image8] = []
    for i, img in enumerate(batch):
        if not isinstance(img, np.ndarray):
            raise TypeError(f"image {i}: expected a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"image {i}: expected an HxWx3 uint8 RGB array, got {img.dtype} {img.shape}")
        if img.shape[0] == 0 or img.shape[1] == 0:
            raise ValueError(f"image {i}: empty image {img.shape}")
        out.append(img)
    return out


class Runtime(ABC):
    """A loaded detection model. Thread-safe: calls to :meth:`infer` are serialised.

    ``score_threshold`` (0..1) defaults to the spec's; ``threads`` is the
    number of CPU threads the runtime may use (``None``: its default).
    """

    def __init__(self, spec: ModelSpec, score_threshold: float | None = None) -> None:
        self.spec = spec
        self.score_threshold = spec.score_threshold if score_threshold is None else float(score_threshold)
        if not 0.0 <= self.score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        self.labels: dict[int, str] = load_labels(spec)
        self.input_size: tuple[int, int] = spec.input_size or (0, 0)
        self._lock = threading.Lock()
        self._closed = False

    def label(self, class_id: int) -> str:
        """The name of class ``class_id`` (``"class_<id>"`` when the labels do not name it)."""
        return self.labels.get(class_id, f"class_{class_id}")

    def infer(self, batch: Sequence[Image8]) -> list[list[Detection]]:
        """Detect objects in each image of ``batch`` (``HxWx3`` uint8 RGB, any size each).

        Returns one list per image, highest score first, boxes in that image's pixels.
        """
        images = _check_images(batch)
        if not images:
            return []
        with self._lock:
            if self._closed:
                raise RuntimeError(f"runtime for model {self.spec.id!r} is closed")
            return self._infer(images)

    def detect(self, image: Image8) -> list[Detection]:
        """Detect objects in one image; see :meth:`infer`."""
        return self.infer([image])[0]

    def close(self) -> None:
        """Release the model; later calls to :meth:`infer` raise ``RuntimeError``."""
        with self._lock:
            self._closed = True
            self._release()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @abstractmethod
    def _infer(self, images: list[Image8]) -> list[list[Detection]]: ...

    @abstractmethod
    def _release(self) -> None:
        """Drop references to the underlying engine."""

    def _to_tensor(self, fitted: list[Image8], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        """Stack fitted images into the model's input tensor (layout, channel order, normalisation)."""
        x: npt.NDArray[Any] = np.stack(fitted)
        if self.spec.pixel_format == "bgr":
            x = x[..., ::-1]
        dt = np.dtype(dtype)
        if dt == np.uint8:
            x = x.astype(np.uint8, copy=False)
        elif dt == np.int8:
            x = (x.astype(np.int16) - 128).astype(np.int8)
        else:
            mean = np.asarray(self.spec.mean, dtype=np.float32)
            std = np.asarray(self.spec.std, dtype=np.float32)
            x = ((x.astype(np.float32) - mean) / std).astype(dt)
        if self.spec.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x)

    def _detections(
        self, boxes: FloatArray, scores: FloatArray, ids: IntArray, geo: Geometry
    ) -> list[Detection]:
        """Build detections from boxes in model-input pixels (already thresholded and sorted)."""
        img_boxes = geo.to_image(boxes)
        out: list[Detection] = []
        for b, s, c in zip(img_boxes, scores, ids, strict=True):
            if b[2] <= b[0] or b[3] <= b[1]:
                continue
            out.append(Detection(
                label=self.label(int(c)), label_id=int(c), score=float(min(1.0, max(0.0, s))),
                box=Box(float(b[0]), float(b[1]), float(b[2]), float(b[3])),
            ))
            if len(out) >= self.spec.max_detections:
                break
        return out


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
